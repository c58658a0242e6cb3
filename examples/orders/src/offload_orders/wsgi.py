"""The shop's WSGI app, configured from the environment: ``gunicorn offload_orders.wsgi:app``."""

from __future__ import annotations

from offload_orders.app import create_app

app = create_app()
