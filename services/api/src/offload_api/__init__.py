"""Offload HTTP API: a thin Flask app that validates, records and publishes jobs, and reports on them."""

from __future__ import annotations

from offload_api.app import create_app

__all__ = ["create_app"]
