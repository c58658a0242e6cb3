"""Job state in Redis: the store, the states and the record clients see."""

from __future__ import annotations

from offload.status.records import JobRecord, iso
from offload.status.states import TERMINAL, TRANSITIONS, JobState
from offload.status.store import BatchStore, Claim, Created, Page, Retention, Started, StatusStore, now_ms, redis_errors

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "BatchStore",
    "Claim",
    "Created",
    "JobRecord",
    "JobState",
    "Page",
    "Retention",
    "Started",
    "StatusStore",
    "iso",
    "now_ms",
    "redis_errors",
]
