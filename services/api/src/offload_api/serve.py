"""``offload-api``: gunicorn with gevent patched in before anything imports ``ssl`` or ``socket``.

Runs ``gunicorn -c python:offload_api.gunicorn_conf offload_api.wsgi:app`` plus any arguments given.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402


def main() -> None:
    """Start gunicorn with the API's configuration."""
    from gunicorn.app.wsgiapp import run

    sys.argv = [sys.argv[0], "-c", "python:offload_api.gunicorn_conf", *sys.argv[1:], "offload_api.wsgi:app"]
    run()


if __name__ == "__main__":
    main()
