"""Offload HTTP API: a thin Flask app that validates, records and publishes jobs, and reports on them.

Build it with :func:`offload_api.app.create_app`. This package imports nothing at import time, so
that ``offload_api.serve`` can patch gevent in before ``ssl`` and ``socket`` are loaded.
"""
