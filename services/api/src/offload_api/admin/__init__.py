"""The admin web page under ``/admin``: queues, jobs, dead letters and schedules, for admin keys only."""

from __future__ import annotations

from offload_api.admin import keys_page  # noqa: F401 - its routes join the blueprint
from offload_api.admin.views import bp, install

__all__ = ["bp", "install"]
