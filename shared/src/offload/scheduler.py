"""The scheduler process: enqueues the shipped schedules' jobs, one active instance at a time.

periodiq's own loop sends a bare Dramatiq message at each tick, with no cross-instance dedupe
and no catch-up (reliability-security.md F19): two schedulers double every run, and a tick missed
while none ran is lost. This loop keeps periodiq's cron engine (``offload.cron``) and adds:

- **One active scheduler.** A Redis lock (``SET NX PX``, renewed every few seconds by its holder)
  decides who enqueues; a standby retries the lock and takes over within the lock's lifetime
  (``OFFLOAD_SCHEDULER_LOCK_TTL``, 30 s) after the active one dies.
- **At most one run per tick.** A run's job id is derived from the schedule and the tick time, and
  the publisher creates a job id only once, so even two schedulers that both believe they lead
  (a paused process waking up) enqueue a tick once.
- **Catch-up.** The last tick enqueued is kept in Redis per schedule; a scheduler that starts
  (or takes over) enqueues the latest tick missed since then, once. Older ticks missed meanwhile
  are not run, but never silently: each is counted in ``<prefix>:scheduler:missed`` and logged. A
  broker outage at a tick leaves the tick due, so it is enqueued as soon as the broker is back.

Runs are ordinary Offload jobs (``internal``: clients cannot submit them), recorded and
followed like any other.

The same loop fires the schedules tenants make over the API (:mod:`offload.user_schedules`),
read afresh from Redis at every step (at least once a second), so an edit, a pause or a deletion
takes effect within about a second without a restart. Their runs get the same deterministic job
ids (per schedule and tick), are submitted as their tenant's jobs with that tenant's checks, and
follow each schedule's missed-tick policy after a downtime.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType

from offload import cron
from offload.contracts import SCHEDULES, Schedule
from offload.errors import ClientError, DependencyError
from offload.logs import configure_logging
from offload.publish import Publisher
from offload.settings import Settings, load_settings
from offload.status import StatusStore, redis_errors
from offload.status.schedules import ScheduleState
from offload.status.user_schedules import StoredSchedule, UserSchedules
from offload.user_schedules import from_stored, millis, moment

logger = logging.getLogger(__name__)

#: Namespace of the job ids of scheduled runs.
RUN_NAMESPACE = uuid.UUID("7d0c5b9e-4f0e-4a53-9a57-0ff10ad5c4ed")
#: The longest the loop sleeps: how soon a schedule made, edited, paused or deleted over the API is seen.
CHANGE_POLL = 1.0


@dataclass(frozen=True)
class ScheduleStatus:
    """A schedule as listings show it: its next tick, the last one enqueued, the ticks missed.

    ``last_run`` is None before the first run; ``missed`` counts, in all, the ticks that passed while
    no scheduler ran (a restarted one runs only the latest of them).
    """

    schedule: Schedule
    next_run: datetime
    last_run: str | None
    missed: int = 0


def schedule_status(store: StatusStore, *, tz: str, schedules: Sequence[Schedule] = SCHEDULES) -> list[ScheduleStatus]:
    """Every schedule's next tick after now (in ``tz``) and last enqueued tick, for the API and the admin page.

    Raises:
        redis.RedisError: Redis is unavailable.
    """
    now = datetime.now(UTC)
    found = ScheduleState(store).listing([s.name for s in schedules])
    return [
        ScheduleStatus(schedule, cron.next_run(schedule.cron, now, tz), last, skipped)
        for schedule, (last, skipped) in zip(schedules, found, strict=True)
    ]


def run_id(schedule: Schedule, tick: datetime) -> str:
    """The job id of ``schedule``'s run at ``tick``: the same in every scheduler process."""
    return _tick_id(schedule.name, tick)


def user_run_id(schedule_id: str, tick: datetime) -> str:
    """The job id of a tenant-made schedule's run at ``tick``: the same in every scheduler process."""
    return _tick_id(f"schedule/{schedule_id}", tick)


def _tick_id(key: str, tick: datetime) -> str:
    return str(uuid.uuid5(RUN_NAMESPACE, f"{key}@{tick.astimezone(UTC).isoformat()}"))


class Scheduler:
    """Enqueues ``schedules`` when they fall due, while it holds the leader lock.

    Args:
        publisher: records and publishes the runs.
        schedules: what to run.
        tz: the time zone of the cron expressions.
        lock_ttl: seconds the leader lock lives without renewal.
        tenant: the tenant runs belong to.
        clock: the current time (tests pass a simulated one).
        identity: this process's name in the lock (host and pid by default).
    """

    def __init__(
        self,
        publisher: Publisher,
        schedules: Sequence[Schedule] = SCHEDULES,
        *,
        tz: str = "UTC",
        lock_ttl: float = 30.0,
        tenant: str = "system",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        identity: str | None = None,
    ) -> None:
        self.publisher = publisher
        self.store = publisher.store
        self.schedules = list(schedules)
        self.tz = tz
        self.lock_ttl_ms = int(lock_ttl * 1000)
        self.tenant = tenant
        self.clock = clock
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.state = ScheduleState(self.store)
        self.user = UserSchedules(self.store)
        #: How late a ``skip`` schedule's tick may still run: a failover's lapse and a step.
        self.grace = timedelta(milliseconds=self.lock_ttl_ms) + timedelta(seconds=5)
        self.leading = False
        #: When :meth:`lead` last renewed (a long step renews on the way, see :meth:`_still_leading`).
        self.renewed = 0.0

    def lead(self) -> bool:
        """Hold the leader lock (take it if free, renew it if ours); True while this one leads."""
        taken = self.state.take_or_renew(self.identity, self.lock_ttl_ms, holding=self.leading)
        self.renewed = time.monotonic()
        if taken != self.leading:
            logger.info("Scheduler %s %s.", self.identity, "is now active" if taken else "lost the lock; standing by")
        self.leading = taken
        return taken

    def release(self) -> None:
        """Give the lock up (a clean stop lets a standby take over at once)."""
        if self.leading:
            self.state.release(self.identity)
            self.leading = False

    def step(self) -> list[str]:
        """Enqueue every schedule's latest due tick, if this scheduler leads; returns the job ids.

        A schedule seen for the first time starts from now (no backfill of a new install).
        """
        if not self.lead():
            return []
        now = self.clock()
        enqueued = []
        for schedule in self.schedules:
            last = self.state.last_tick(schedule.name)
            if last is None:
                self.state.start(schedule.name, now)
                continue
            due, total = cron.due(schedule.cron, last, now, self.tz)
            if not due:
                continue
            tick = due[-1]
            try:
                enqueued.append(self._enqueue(schedule, tick))
            except DependencyError as exc:  # the tick stays due: enqueued on a later step
                logger.warning("Could not enqueue %s at %s: %s", schedule.name, tick.isoformat(), exc)
                continue
            skipped = total - 1
            self.state.enqueued(schedule.name, tick, skipped=skipped)
            if skipped:  # never silent: logged and counted (GET /v1/schedules readers, alerts)
                logger.warning(
                    "Skipped %d tick(s) of %s between %s and %s (none ran: no scheduler, or the broker was down); "
                    "enqueued only the latest.",
                    skipped,
                    schedule.name,
                    last.isoformat(),
                    tick.isoformat(),
                )
        for stored in self.user.listing():
            if stored.paused_at is not None:
                continue
            if not self._still_leading():
                break
            try:
                enqueued += self._fire_user(stored, now)
            except ValueError as exc:  # a definition that no longer reads: the others still run
                logger.error("Schedule %s skipped: its definition cannot be read (%s).", stored.id, exc)
        return enqueued

    def _still_leading(self) -> bool:
        """Renew the lock if a third of its lifetime passed in this step (many catch-ups take a while)."""
        return time.monotonic() - self.renewed < self.lock_ttl_ms / 3000 or self.lead()

    def _fire_user(self, stored: StoredSchedule, now: datetime) -> list[str]:
        """Run the ticks of a tenant-made schedule that its missed-tick policy says to run; their job ids."""
        definition = from_stored(stored.definition)
        policy = definition.policy(self.grace)
        due, total = definition.timing(moment(stored.anchor)).due(moment(stored.last_tick), now, keep=policy.keep)
        run, missed = policy.runs(due, total, now)
        if missed:
            logger.warning("Schedule %s: %d tick(s) missed and not run (policy %s).", stored.id, missed, policy.missed)
        if not run:
            if due:
                self.user.advance(stored.id, tick=millis(due[-1]), missed=missed)
            return []
        enqueued = []
        for tick in run:
            job_id: str | None = user_run_id(stored.id, tick)
            error = None
            try:
                prepared = definition.prepare(self.publisher.preparer, tenant=stored.tenant, job_id=job_id)
                self.publisher.enqueue(prepared)
            except DependencyError as exc:  # the tick stays due: enqueued on a later step
                logger.warning("Could not enqueue schedule %s at %s: %s", stored.id, tick.isoformat(), exc)
                break
            except ClientError as exc:  # its job no longer passes (contract changed, quota): noted, not retried
                logger.warning("Schedule %s at %s not run: %s", stored.id, tick.isoformat(), exc.message)
                job_id, error = None, exc.message
            if job_id is not None:
                enqueued.append(job_id)
            self.user.advance(
                stored.id, tick=millis(tick), job_id=job_id, now=millis(self.clock()), missed=missed, error=error
            )
            missed = 0  # counted once, with the first tick handled
        return enqueued

    def _enqueue(self, schedule: Schedule, tick: datetime) -> str:
        payload = dict(schedule.payload)
        if schedule.tick_field:
            payload[schedule.tick_field] = tick.isoformat()
        body = {"type": schedule.job_type, "payload": payload}
        prepared = self.publisher.preparer.prepare(
            body, tenant=self.tenant, job_id=run_id(schedule, tick), internal=True
        )
        submitted = self.publisher.enqueue(prepared)
        if not submitted.replayed:
            logger.info("Enqueued %s for %s as job %s.", schedule.name, tick.isoformat(), submitted.job_id)
        return submitted.job_id

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set: each second at least (renew the lock, see API changes, catch each tick)."""
        interval = min(CHANGE_POLL, self.lock_ttl_ms / 3000)
        try:
            while not stop.is_set():
                try:
                    with redis_errors():  # Redis down: logged, tried again next step (the lock lapses meanwhile)
                        self.step()
                except DependencyError as exc:
                    logger.warning("Scheduler step failed: %s", exc)
                now = self.clock()
                soonest = min((cron.next_run(s.cron, now, self.tz) for s in self.schedules), default=None)
                wait = interval if soonest is None else min(interval, max(0.05, (soonest - now).total_seconds()))
                stop.wait(wait)
        finally:
            self.release()


def main() -> int:
    """Entry point of ``offload-scheduler``: run until SIGTERM or SIGINT."""
    settings: Settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    publisher = Publisher.from_settings(settings)
    scheduler = Scheduler(
        publisher, tz=settings.timezone, lock_ttl=settings.scheduler_lock_ttl, tenant=settings.scheduler_tenant
    )
    logger.info(
        "Scheduler %s started (%d schedules, time zone %s).", scheduler.identity, len(SCHEDULES), settings.timezone
    )
    return run_until_signalled(scheduler, publisher)


def run_until_signalled(scheduler: Scheduler, publisher: Publisher) -> int:
    """Run ``scheduler`` until SIGTERM or SIGINT, then close ``publisher``; the exit status (0)."""
    stop = threading.Event()

    def stop_on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("Scheduler stopping (signal %d).", signum)
        stop.set()

    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGINT, stop_on_signal)
    try:
        scheduler.run(stop)
    finally:
        publisher.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
