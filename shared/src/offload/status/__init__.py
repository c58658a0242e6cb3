"""Job state in Redis: the store, the states and the record clients see."""

from __future__ import annotations

from offload.status.batches import BatchStore
from offload.status.records import JobRecord, iso
from offload.status.scripts import now_ms, redis_errors
from offload.status.states import TERMINAL, TRANSITIONS, JobState
from offload.status.store import Claim, Created, DeadLetterReason, Ending, Page, Retention, Started, StatusStore

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "BatchStore",
    "Claim",
    "Created",
    "DeadLetterReason",
    "Ending",
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
