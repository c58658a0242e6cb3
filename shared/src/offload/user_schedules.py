"""Schedules that tenants make: what a definition may say, when its ticks fall, which ticks to run.

A definition names its timing (a cron expression in an IANA time zone, or an interval in whole
seconds), the job to submit at each tick (``{"type", "payload", "options"}``, checked by the same
:class:`~offload.submission.Preparer` as ``POST /v1/jobs``, so a schedule is refused for exactly
the reasons its job would be) and what to do with ticks missed while no scheduler ran:

- ``skip``: run a tick only while it is fresh (within :attr:`Policy.grace` of its time, long
  enough to cover a failover); older ones are counted missed and not run.
- ``run_once``: run the latest tick owed, however late; the older ones are counted missed.
- ``run_all``: run every tick owed, oldest first, up to ``catch_up_limit`` of the latest; older
  ones beyond it are counted missed.

The scheduler (:mod:`offload.scheduler`) fires them; the API (``/v1/schedules``) edits them;
Redis holds them (:mod:`offload.status.user_schedules`).
"""

from __future__ import annotations

import calendar
import functools
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from offload import cron, problems
from offload.contracts import pydantic_errors
from offload.errors import ValidationFailed
from offload.submission import PreparedJob, Preparer

#: The shortest interval, in seconds: shorter would turn the scheduler into a load generator.
MIN_INTERVAL = 1
#: The longest interval, in seconds (a year); a rarer job is a cron expression.
MAX_INTERVAL = 366 * 24 * 3600
#: The most ticks ``run_all`` may catch up after a downtime.
MAX_CATCH_UP = 100
#: The most schedules one tenant may have.
MAX_PER_TENANT = 100
#: Where stored times count from.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Missed = Literal["skip", "run_once", "run_all"]


class ScheduleRequest(BaseModel):
    """The body of ``POST /v1/schedules`` (and, merged over the stored one, of ``PATCH``)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: str = Field(default="", max_length=200, description="A label of your own.")
    cron: str | None = Field(
        default=None, max_length=200, description="Five cron fields (minute hour day month weekday) or '@hourly' etc."
    )
    interval: int | None = Field(
        default=None,
        ge=MIN_INTERVAL,
        le=MAX_INTERVAL,
        description=f"Seconds between runs ({MIN_INTERVAL} at least); instead of cron.",
    )
    timezone: str = Field(default="UTC", max_length=64, description="The IANA time zone of the cron expression.")
    job: dict[str, Any] = Field(description="The job to submit at each tick, as for POST /v1/jobs.")
    missed: Missed = Field(default="run_once", description="What to do with ticks missed while no scheduler ran.")
    catch_up_limit: int = Field(
        default=10, ge=1, le=MAX_CATCH_UP, description="The most missed ticks 'run_all' runs after a downtime."
    )


@dataclass(frozen=True)
class Timing:
    """When a schedule's ticks fall: on ``cron`` in ``tz``, or every ``interval`` seconds from ``anchor``."""

    cron: str | None
    interval: int | None
    tz: str
    anchor: datetime

    def next_run(self, after: datetime) -> datetime:
        """The first tick strictly after ``after``."""
        if self.interval is None:
            return cron.next_run(str(self.cron), after, self.tz)
        done = max(0, int((after - self.anchor).total_seconds() // self.interval) + 1)
        return self.anchor + timedelta(seconds=done * self.interval)

    def due(self, since: datetime, now: datetime, *, keep: int) -> tuple[list[datetime], int]:
        """The latest ``keep`` ticks in ``(since, now]``, oldest first, and how many ticks that range holds.

        A range reaching further back than :data:`offload.cron.LOOKBACK` is cut there.
        """
        if self.interval is None:
            return cron.due(str(self.cron), since, now, self.tz, keep=keep)
        since = max(since, now - cron.LOOKBACK)
        first = int((since - self.anchor).total_seconds() // self.interval) + 1
        last = int((now - self.anchor).total_seconds() // self.interval)
        kept = range(max(first, last - keep + 1), last + 1)
        return [self.anchor + timedelta(seconds=n * self.interval) for n in kept], max(0, last - first + 1)


@dataclass(frozen=True)
class Policy:
    """A schedule's missed-tick policy, and the age past which ``skip`` calls a tick missed."""

    missed: Missed
    catch_up_limit: int
    grace: timedelta

    def runs(self, due: list[datetime], total: int, now: datetime) -> tuple[list[datetime], int]:
        """Of ``due`` (the latest ticks owed, ``total`` in all): the ticks to run, and how many are missed."""
        if not due:
            return [], 0
        if self.missed == "run_all":
            run = due
        elif self.missed == "skip" and now - due[-1] > self.grace:
            run = []
        else:
            run = due[-1:]
        return run, total - len(run)

    @property
    def keep(self) -> int:
        """How many of the latest ticks owed :meth:`runs` needs to see."""
        return self.catch_up_limit if self.missed == "run_all" else 1


@dataclass(frozen=True)
class Definition:
    """A validated schedule: its request as stored, its timing and policy builders."""

    request: ScheduleRequest

    def stored(self) -> dict[str, Any]:
        """The definition as Redis keeps it (JSON)."""
        return self.request.model_dump(mode="json")

    def timing(self, anchor: datetime) -> Timing:
        """Its ticks, interval ones counted from ``anchor``."""
        return Timing(self.request.cron, self.request.interval, self.request.timezone, anchor)

    def policy(self, grace: timedelta) -> Policy:
        """Its missed-tick policy, ``skip`` running ticks up to ``grace`` late."""
        return Policy(self.request.missed, self.request.catch_up_limit, grace)

    def retimes(self, other: Definition) -> bool:
        """Whether ``other`` ticks at other times than this one (its ticks then count afresh)."""
        mine, theirs = self.request, other.request
        return (mine.cron, mine.interval, mine.timezone) != (theirs.cron, theirs.interval, theirs.timezone)

    def prepare(self, preparer: Preparer, *, tenant: str, job_id: str | None = None) -> PreparedJob:
        """The job of one run, validated now (the catalogue may have changed since the schedule was made).

        Raises:
            ValidationFailed: the job no longer passes its contract; field paths start with ``job``.
            UnknownJobType: its type is no longer submittable.
        """
        try:
            return preparer.prepare(self.request.job, tenant=tenant, job_id=job_id)
        except ValidationFailed as exc:
            raise ValidationFailed(f"job: {exc.message}", errors=problems.nested(exc.errors, "job")) from None


def validate(body: Any, preparer: Preparer, *, tenant: str) -> Definition:
    """Check a schedule request as ``tenant`` sends it: timing, zone, policy, and its job as a submission.

    Raises:
        ValidationFailed: a field is wrong (``errors`` names each: ``cron``, ``timezone``, ``job.payload.x``...).
        UnknownJobType: the job's type is unknown or not submittable by clients.
    """
    if not isinstance(body, dict):
        raise _invalid("body", "dict_type", "must be a JSON object")
    try:
        request = ScheduleRequest.model_validate(body)
    except PydanticValidationError as exc:
        raise ValidationFailed(
            "The request does not match the schedule schema.", errors=pydantic_errors(exc, body)
        ) from None
    if (request.cron is None) == (request.interval is None):
        raise _invalid("cron", "one_of_cron_interval", "give exactly one of 'cron' and 'interval'")
    if request.cron is not None:
        try:
            cron.parse(request.cron)
        except ValueError:
            raise _invalid("cron", "cron_expression", "not five cron fields or an '@' name like '@hourly'") from None
    if request.timezone not in _zones():
        raise _invalid("timezone", "unknown_timezone", "not an IANA time zone such as 'Europe/Berlin'")
    definition = Definition(request)
    definition.prepare(preparer, tenant=tenant)
    return definition


@functools.cache
def _zones() -> frozenset[str]:
    """The IANA zone names this machine's time zone database has (``localtime`` and files are not zones)."""
    return frozenset(zoneinfo.available_timezones())


def from_stored(stored: dict[str, Any]) -> Definition:
    """A definition Redis holds (validated when it was stored)."""
    return Definition(ScheduleRequest.model_validate(stored, strict=False))


def moment(ms: int) -> datetime:
    """Milliseconds since the epoch as an aware UTC time (exact: no float on the way)."""
    return EPOCH + timedelta(milliseconds=ms)


def millis(at: datetime) -> int:
    """An aware time as milliseconds since the epoch, exactly (a float could land a tick 1 ms early)."""
    return calendar.timegm(at.utctimetuple()) * 1000 + at.microsecond // 1000


def _invalid(path: str, rule: str, problem: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid {path!r}: {problem}.", errors=[problems.in_body(path, rule, problem)])
