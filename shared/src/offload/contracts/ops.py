"""Offload's own periodic jobs (consumed by services/worker-reports) and the schedules that run them.

The schedules are data, like the contracts: the scheduler process enqueues them, ``GET
/v1/schedules`` lists them, and a test parses every cron expression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from offload.contracts._base import JobContract, Payload, RetryPolicy
from offload.contracts.reports import REPORTS_QUEUE

#: Days the hourly statistics are kept.
STATS_RETENTION_DAYS = 90


class AggregatePayload(Payload):
    """Compute the statistics of the hours before ``until`` (jobs by the hour they were created).

    The hour just ended and the one before are both computed, so jobs that finished late are
    counted on the next run; a run is idempotent (it overwrites the hours it computes).
    """

    until: str | None = Field(default=None, max_length=40, description="ISO time; defaults to now.")
    hours: int = Field(default=2, ge=1, le=48)


class AggregateResult(BaseModel):
    """What ``stats.aggregate`` returns."""

    hours: list[str]
    jobs: int
    groups: int


AGGREGATE = JobContract(
    name="stats.aggregate",
    queue=REPORTS_QUEUE,
    payload=AggregatePayload,
    result=AggregateResult,
    description="Computes hourly job statistics per type, tenant and state (kept for 90 days).",
    retry=RetryPolicy(max_retries=2, min_backoff=30, max_backoff=300),
    time_limit=600,
    internal=True,
)

CONTRACTS = (AGGREGATE,)


@dataclass(frozen=True)
class Schedule:
    """A job Offload enqueues on a cron schedule (minute hour day-of-month month day-of-week).

    Attributes:
        name: the schedule's own name (job ids are derived from it and the tick time).
        cron: five cron fields, or ``@hourly`` / ``@daily`` and the like.
        job_type: the contract to enqueue.
        description: one sentence for ``GET /v1/schedules``.
        payload: the payload of every run.
        tick_field: a payload field that receives the tick's time (ISO 8601), if any.
    """

    name: str
    cron: str
    job_type: str
    description: str
    payload: dict[str, Any] = field(default_factory=dict)
    tick_field: str | None = None


SCHEDULES = (
    Schedule(
        name="stats.aggregate.hourly",
        cron="0 * * * *",
        job_type="stats.aggregate",
        description="Job statistics of the last two hours, every hour on the hour.",
        tick_field="until",
    ),
    Schedule(
        name="storage.cleanup.daily",
        cron="30 3 * * *",
        job_type="storage.cleanup",
        description="Uploads and outputs past OFFLOAD_STORAGE_RETENTION removed, daily at 03:30.",
    ),
)
