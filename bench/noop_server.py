"""``python -m bench.noop_server --bind 127.0.0.1:PORT``: the no-op app served the API's way.

A copy of ``offload_api.serve``: gevent's monkey patching first, then gunicorn with the API's own
configuration module, so that only the application differs from the real API.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402


def main() -> None:
    """Start gunicorn with the API's configuration and the no-op app."""
    from gunicorn.app.wsgiapp import run

    sys.argv = [sys.argv[0], "-c", "python:offload_api.gunicorn_conf", *sys.argv[1:], "bench.noop_app:app"]
    run()


if __name__ == "__main__":
    main()
