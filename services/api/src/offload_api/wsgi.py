"""The WSGI entry point: ``gunicorn -c python:offload_api.gunicorn_conf offload_api.wsgi:app``."""

from __future__ import annotations

from offload_api.app import create_app

app = create_app()
