"""gunicorn settings for the API: gevent workers (SSE streams and confirm waits are I/O), on loopback.

Start it with ``offload-api`` (which patches gevent in first), not plain ``gunicorn``.

Override any of them with gunicorn's own ``GUNICORN_CMD_ARGS`` (e.g. ``--bind 0.0.0.0:8000`` in a
container).
"""

from __future__ import annotations

import multiprocessing

bind = "127.0.0.1:8000"
worker_class = "gevent"
#: Measured on 2 cores: two gevent workers beat one and three (performance-notes.md).
workers = min(2, multiprocessing.cpu_count())
worker_connections = 2000
#: Seconds a worker may stay silent before the arbiter restarts it; SSE streams send keep-alives.
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = None
errorlog = "-"
loglevel = "info"
