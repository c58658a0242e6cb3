"""Schedules as the JSON API and the admin page both show and act on them, written once.

Two kinds are listed together: the shipped ones (``offload.contracts.SCHEDULES``: Offload's own
maintenance, read-only, seen by every caller) and the ones tenants make (a tenant sees and acts
on its own, an admin on all). Both are described by :func:`listing` in one shape
(``ScheduleItem`` in the OpenAPI document).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from offload.contracts import SCHEDULES
from offload.errors import Conflict, Forbidden, NotFound
from offload.publish import Submitted
from offload.scheduler import ScheduleStatus, schedule_status
from offload.status import iso
from offload.status.scripts import now_ms
from offload.status.user_schedules import StoredSchedule, UserSchedules
from offload.user_schedules import MAX_PER_TENANT, from_stored, moment, validate
from offload_api.audit import admin_action
from offload_api.extension import Services

#: The longest id looked up (ids are UUIDs; anything longer is not one).
MAX_ID = 64


def store(found: Services) -> UserSchedules:
    """The tenant-made schedules in Redis."""
    return UserSchedules(found.store)


def shipped(found: Services, name: str) -> dict[str, Any] | None:
    """The shipped schedule ``name`` as the API answers it, or None if no shipped schedule has that name."""
    return next((_shipped_item(found, row) for row in _shipped(found) if row.schedule.name == name), None)


def find(found: Services, schedule_id: str, *, scope: str | None) -> StoredSchedule:
    """The schedule ``schedule_id`` that ``scope`` (a tenant, None for an admin) may act on.

    Raises:
        Forbidden: it names a shipped schedule (read-only).
        NotFound: no such schedule of ``scope`` (another tenant's looks the same as none).
    """
    if any(schedule.name == schedule_id for schedule in SCHEDULES):
        raise Forbidden(f"{schedule_id!r} is a shipped schedule: it is read-only.")
    stored = store(found).get(schedule_id, tenant=scope) if len(schedule_id) <= MAX_ID else None
    if stored is None:
        raise NotFound(f"Schedule {schedule_id[:64]!r} does not exist.")
    return stored


def create(found: Services, body: Any, *, tenant: str) -> StoredSchedule:
    """Validate ``body`` as ``tenant``'s schedule (its job as a submission) and store it.

    Raises:
        ValidationFailed: a field is wrong (named in ``errors``).
        UnknownJobType: the job's type is not submittable.
        Conflict: ``tenant`` already has :data:`MAX_PER_TENANT` schedules.
    """
    definition = validate(body, found.publisher.preparer, tenant=tenant)
    schedules = store(found)
    if schedules.count(tenant) >= MAX_PER_TENANT:
        raise Conflict(f"Your tenant has {MAX_PER_TENANT} schedules, the most it may have; delete one first.")
    schedule_id = str(uuid.uuid4())
    schedules.create(schedule_id, tenant=tenant, definition=definition.stored(), now=now_ms())
    admin_action("schedule.create", schedule_id)
    return _created(schedules, schedule_id)


def update(found: Services, stored: StoredSchedule, changes: Any) -> StoredSchedule:
    """Merge ``changes`` over the stored definition and store it if it validates as a whole.

    A new cron, interval or zone counts its ticks from now (nothing is owed under the old timing).

    Raises:
        ValidationFailed: the merged definition is wrong (or ``changes`` is not an object).
        UnknownJobType: the job's type is not submittable.
        NotFound: the schedule was deleted meanwhile.
        Conflict: another change landed after ``stored`` was read (nothing was written: try again).
    """
    merged = {**stored.definition, **changes} if isinstance(changes, dict) else changes
    definition = validate(merged, found.publisher.preparer, tenant=stored.tenant)
    retime = from_stored(stored.definition).retimes(definition)
    schedules = store(found)
    outcome = schedules.update(
        stored.id, version=stored.version, definition=definition.stored(), now=now_ms(), retime=retime
    )
    if outcome == "gone":
        raise NotFound(f"Schedule {stored.id!r} does not exist.")
    if outcome == "changed":
        raise Conflict(f"Schedule {stored.id!r} was changed by another request meanwhile; read it and try again.")
    admin_action("schedule.update", stored.id)
    return _created(schedules, stored.id)


def switch(found: Services, stored: StoredSchedule, *, paused: bool) -> StoredSchedule:
    """Pause the schedule (no run until resumed) or resume it (from now: the paused time owes nothing).

    Raises:
        NotFound: the schedule was deleted meanwhile.
    """
    schedules = store(found)
    done = (schedules.pause if paused else schedules.resume)(stored.id, now=now_ms())
    if not done:
        raise NotFound(f"Schedule {stored.id!r} does not exist.")
    admin_action("schedule.pause" if paused else "schedule.resume", stored.id)
    return _created(schedules, stored.id)


def run_now(found: Services, stored: StoredSchedule) -> Submitted:
    """Submit the schedule's job at once, as its tenant, with a fresh id; noted as its last run.

    Paused or not, the schedule's own ticks are unchanged.

    Raises:
        ValidationFailed, UnknownJobType: its job no longer passes its contract.
        QuotaExceeded: the tenant's quota for the type is used up.
        BrokerUnavailable: RabbitMQ did not take the message (nothing is left behind).
    """
    prepared = from_stored(stored.definition).prepare(found.publisher.preparer, tenant=stored.tenant)
    submitted = found.publisher.enqueue(prepared)
    store(found).ran(stored.id, job_id=submitted.job_id, now=now_ms())
    admin_action("schedule.run", stored.id, f"ok: job {submitted.job_id}")
    return submitted


def delete(found: Services, stored: StoredSchedule) -> None:
    """Remove the schedule: the scheduler runs it no more (within a second); its past runs stay."""
    store(found).delete(stored.id, tenant=stored.tenant)
    admin_action("schedule.delete", stored.id)


def listing(found: Services, *, scope: str | None) -> list[dict[str, Any]]:
    """The shipped schedules, then ``scope``'s own (every tenant's for None), oldest first."""
    shipped = [_shipped_item(found, row) for row in _shipped(found)]
    return shipped + [describe(found, s) for s in store(found).listing(tenant=scope)]


def describe(found: Services, stored: StoredSchedule) -> dict[str, Any]:
    """A tenant-made schedule as the API answers it: its definition, next run and last run with its state."""
    definition = from_stored(stored.definition)
    request = definition.request
    now = datetime.now(UTC)
    paused = stored.paused_at is not None
    timing = definition.timing(moment(stored.anchor))
    spec = "seconds" if timing.interval is None else "milliseconds"  # interval ticks fall on the anchor's ms
    last_run = None
    if stored.last_job_id is not None:
        record = found.store.queries.get(stored.last_job_id)
        last_run = {
            "job_id": stored.last_job_id,
            "state": record.state.value if record is not None else None,
            "at": iso(stored.last_run_at),
        }
    return {
        "id": stored.id,
        "name": request.name,
        "owner": stored.tenant,
        "read_only": False,
        "job_type": request.job.get("type"),
        "cron": request.cron,
        "interval": request.interval,
        "timezone": request.timezone,
        "description": request.name,
        "job": request.job,
        "missed": request.missed,
        "catch_up_limit": request.catch_up_limit,
        "paused": paused,
        "paused_at": iso(stored.paused_at),
        "next_run_at": None if paused else timing.next_run(max(now, moment(stored.last_tick))).isoformat(timespec=spec),
        "last_run_at": iso(stored.last_run_at),
        "last_run": last_run,
        "missed_runs": stored.missed,
        "last_error": stored.last_error,
        "created_at": iso(stored.created_at),
        "updated_at": iso(stored.updated_at),
    }


def _shipped(found: Services) -> list[ScheduleStatus]:
    return schedule_status(found.store, tz=found.settings.timezone)


def _shipped_item(found: Services, row: ScheduleStatus) -> dict[str, Any]:
    return {
        "id": row.schedule.name,
        "name": row.schedule.name,
        "owner": "system",
        "read_only": True,
        "job_type": row.schedule.job_type,
        "cron": row.schedule.cron,
        "interval": None,
        "timezone": found.settings.timezone,
        "description": row.schedule.description,
        "job": None,
        "missed": "run_once",
        "catch_up_limit": None,
        "paused": False,
        "paused_at": None,
        "next_run_at": row.next_run.isoformat(),
        "last_run_at": row.last_run,
        "last_run": None,
        "missed_runs": row.missed,
        "last_error": None,
        "created_at": None,
        "updated_at": None,
    }


def _created(schedules: UserSchedules, schedule_id: str) -> StoredSchedule:
    stored = schedules.get(schedule_id)
    if stored is None:  # deleted between the write and this read
        raise NotFound(f"Schedule {schedule_id!r} does not exist.")
    return stored
