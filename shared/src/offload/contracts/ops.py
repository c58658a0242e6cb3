"""Offload's own periodic jobs (consumed by services/worker-reports) and the schedules that run them.

The schedules are data, like the contracts: the scheduler process enqueues them, ``GET
/v1/schedules`` lists them, and a test parses every cron expression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from offload.contracts._base import JobContract, Payload, RetryPolicy
from offload.contracts.reports import REPORTS_QUEUE, ReportResult

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


class MaintenancePayload(Payload):
    """Export dead letters RabbitMQ would soon drop, and trim the job indexes of expired records."""

    dead_letters_older_than: int = Field(
        default=6 * 86_400, ge=0, description="Seconds since dead-lettering (RabbitMQ drops them at 7 days)."
    )


class DeadLetterExport(BaseModel):
    """One queue's exported dead letters."""

    queue: str
    count: int
    url: str = Field(description="A signed link to the JSON lines file (relative to the API).")


class AuditExport(BaseModel):
    """The audit log entries exported with the dead letters (those since the previous export)."""

    count: int
    url: str = Field(description="A signed link to the JSON lines file (relative to the API).")


class MaintenanceResult(BaseModel):
    """What ``maintenance.cleanup`` did."""

    index_entries_removed: int | None = Field(description="None when another process was trimming.")
    dead_letters: list[DeadLetterExport]
    audit: AuditExport | None = Field(default=None, description="None when no admin action was recorded since.")


MAINTENANCE = JobContract(
    name="maintenance.cleanup",
    queue=REPORTS_QUEUE,
    payload=MaintenancePayload,
    result=MaintenanceResult,
    description="Exports dead letters before their 7-day expiry and trims indexes of expired job records.",
    retry=RetryPolicy(max_retries=3, min_backoff=60, max_backoff=600),
    time_limit=900,
    internal=True,
)


class DailyOpsPayload(Payload):
    """The operations report of one day (the day before the run, in the scheduler's time zone)."""

    day: str | None = Field(
        default=None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD; yesterday if absent."
    )


DAILY_OPS = JobContract(
    name="report.daily_ops",
    queue=REPORTS_QUEUE,
    payload=DailyOpsPayload,
    result=ReportResult,
    description="Yesterday's job statistics as an XLSX report, emailed to OFFLOAD_ADMIN_EMAIL if set.",
    retry=RetryPolicy(max_retries=3, min_backoff=60, max_backoff=600),
    time_limit=600,
    internal=True,
)

CONTRACTS = (AGGREGATE, MAINTENANCE, DAILY_OPS)


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
        name="report.daily_ops",
        cron="0 2 * * *",
        job_type="report.daily_ops",
        description="Yesterday's statistics as an XLSX report to the admin address, daily at 02:00.",
    ),
    Schedule(
        name="maintenance.cleanup.daily",
        cron="0 4 * * *",
        job_type="maintenance.cleanup",
        description="Dead letters older than 6 days exported to storage, expired index entries trimmed, at 04:00.",
    ),
    Schedule(
        name="storage.cleanup.daily",
        cron="30 3 * * *",
        job_type="storage.cleanup",
        description="Uploads and outputs past OFFLOAD_STORAGE_RETENTION removed, daily at 03:30.",
    ),
)
