"""gunicorn settings for the API: gevent workers (SSE streams and confirm waits are I/O), on loopback.

Start it with ``offload-api`` (which patches gevent in first), not plain ``gunicorn``.

Override any of them with gunicorn's own ``GUNICORN_CMD_ARGS`` (e.g. ``--bind 0.0.0.0:8000`` in a
container).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile

bind = "127.0.0.1:8000"
#: gunicorn's gevent worker, accepting new connections in batches (see ``offload_api.gunicorn_worker``).
worker_class = "offload_api.gunicorn_worker.GeventWorker"
#: Measured on 2 cores: two gevent workers beat one and three (performance-notes.md).
workers = min(2, multiprocessing.cpu_count())
worker_connections = 2000
#: Seconds a worker may stay silent before the arbiter restarts it; SSE streams send keep-alives.
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = None
#: When an access log is turned on, browser tokens (``?token=``) are redacted from it.
logger_class = "offload_api.access_log.RedactingLogger"
errorlog = "-"
loglevel = "info"


# -- metrics -------------------------------------------------------------------------------------
# Every worker process counts into prometheus-client's multiprocess files, which /metrics sums. The
# directory must be set before any worker imports prometheus-client, so it is set here, in the
# arbiter, when gunicorn loads this file; each start begins from empty files.
_METRICS_DIR = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", os.path.join(tempfile.gettempdir(), f"offload-api-metrics-{os.getpid()}")
)
shutil.rmtree(_METRICS_DIR, ignore_errors=True)
os.makedirs(_METRICS_DIR, exist_ok=True)


def post_worker_init(worker: object) -> None:
    """A worker process is ready: open its broker connection now, and freeze what it has loaded.

    Each process connects on its own (after the fork); until it has, its first submissions would
    wait for the handshakes and queue declarations inside their answer deadline (F14: two quiet
    submissions answered 503 on a process that had not published yet).

    The ~80,000 objects of the loaded app (modules, Flask, pydantic's schemas) live as long as the
    process, yet each full collection walked them all: a 60 ms pause, about every 8 s under load,
    in which every request of the process waits. ``gc.freeze()`` moves them to a permanent
    generation that collections skip (measured over 16 s at 600 requests/s: two 60 ms full
    collections per process became one under 30 ms).
    """
    import gc

    from offload_api.extension import services_of

    gc.collect()
    gc.freeze()

    found = services_of(getattr(worker, "wsgi", None))
    if found is not None:
        found.publisher.connect()


def child_exit(_server: object, worker: object) -> None:
    """A worker process ended: its live gauges (open SSE streams) stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(getattr(worker, "pid", 0), _METRICS_DIR)  # type: ignore[no-untyped-call]
