"""gunicorn settings for the shop: threaded workers on loopback.

``gunicorn -c python:offload_orders.gunicorn_conf offload_orders.wsgi:app``; override any of them
with gunicorn's ``GUNICORN_CMD_ARGS`` (``--bind 0.0.0.0:8080`` in a container).

Threads, not gevent: a checkout waits on I/O for a millisecond or two (Redis, the broker's
confirm), which threads serve well; an order page's event stream holds one thread while it is
open, so there are many.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

bind = "127.0.0.1:8080"
worker_class = "gthread"
workers = min(2, multiprocessing.cpu_count())
threads = 32
#: Seconds a worker may stay silent; gthread workers notify the arbiter between requests, whatever a stream does.
timeout = 30
graceful_timeout = 10
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = "warning"


def on_starting(_server: Any) -> None:
    """Import the app's modules once, in the arbiter, before the workers fork.

    Each worker then only builds the app: two workers importing Flask, pydantic and Offload side by
    side on two cores took twice as long to answer their first request.
    """
    import offload_orders.app
    import offload_orders.worker  # noqa: F401


def post_worker_init(worker: Any) -> None:
    """A worker process is ready: connect to the broker now, not inside the first checkout's deadline.

    Then freeze the loaded app's objects out of the garbage collector's full passes (a pause every
    request of the process would wait for; see Offload's own ``offload_api.gunicorn_conf``).
    """
    import gc

    from offload_orders.app import EXTENSION

    worker.wsgi.extensions[EXTENSION].publisher.connect()
    gc.collect()
    gc.freeze()
