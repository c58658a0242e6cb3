"""Moves delayed and backed-off jobs to RabbitMQ when they come due (and keeps the job indexes trim).

Delays and retry backoffs wait in a Redis sorted set rather than in Dramatiq's delay queue, where
the worker would hold each message unacked until its ETA: past RabbitMQ's ``consumer_timeout``
that closes the channel and redelivers everything on it (dramatiq#827, reliability-security.md
D3/F12). Here a job delayed 45 minutes or 30 days is just a score in Redis until it is due, and
survives worker and broker restarts.

Every worker process runs one promoter thread. Claims are atomic and leased (a promoter that dies
mid-publish leaves its claims to be taken again after the lease), so any number may run.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import replace
from typing import Any

from dramatiq.middleware import Middleware

from offload.errors import DependencyError, OffloadError
from offload.publish import Publisher
from offload.status import Ending, StatusStore, now_ms
from offload.status.pauses import Pauses
from offload.submission import PreparedJob
from offload.tracing import TraceCarrier
from offload.worker.metrics import JobMetrics
from offload.worker.slots import SlotKeeper

logger = logging.getLogger(__name__)

#: Most seconds between two looks at the schedule.
POLL_INTERVAL = 0.5
#: Milliseconds a claimed job is leased before another promoter may claim it again.
LEASE_MS = 30_000
#: Seconds between two trims of the job indexes (one process trims; see ``StatusStore.trim_indexes``).
TRIM_INTERVAL = 60.0
#: Seconds between two looks for parked jobs of resumed queues (see :mod:`offload.status.pauses`).
UNPARK_INTERVAL = 1.0
#: Seconds between two sweeps for waiting jobs whose slots freed by expiry (a worker that died).
SLOT_SWEEP_INTERVAL = 5.0
#: Seconds between two looks for stalled jobs (see :meth:`DuePromoter.recover_stalled_if_due`).
STALL_INTERVAL = 30.0
#: Seconds past its time limit and the hard-limit grace after which a running attempt is stalled.
STALL_MARGIN = 60.0


class DuePromoter:
    """Claim due jobs, publish their messages with confirms, and mark them queued."""

    def __init__(
        self,
        store: StatusStore,
        publisher: Publisher,
        *,
        batch: int = 200,
        hard_limit_grace: float = 30.0,
        slots: SlotKeeper | None = None,
        pauses: Pauses | None = None,
        metrics: JobMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.publisher = publisher
        self.batch = batch
        self.hard_limit_grace = hard_limit_grace
        self.slots = slots
        self.pauses = pauses
        self.next_unpark = time.monotonic()
        self.next_slot_sweep = time.monotonic() + SLOT_SWEEP_INTERVAL
        self.next_trim = time.monotonic() + TRIM_INTERVAL
        self.next_stall_check = time.monotonic() + STALL_INTERVAL
        self.layout_checked = False

    def queue_webhooks(self) -> int:
        """Queue a ``webhook.deliver`` job for every finished job with a callback URL; returns how many.

        The job's terminal transition put it in the outbox atomically, so no ending is missed; the
        delivery job's id is derived from the job and its terminal event, so it is queued once.

        Raises:
            DependencyError: Redis or RabbitMQ is unavailable (the claims are retaken later).
        """
        lease, endings = self.store.timers.claim_outbox(limit=self.batch, lease_ms=LEASE_MS)
        ready: list[tuple[Ending, PreparedJob]] = []
        for ending in endings:
            body = {
                "type": "webhook.deliver",
                "payload": {"job_id": ending.job_id, "url": ending.url, "seq": ending.seq},
            }
            delivery_id = str(uuid.uuid5(uuid.UUID(ending.job_id), f"webhook/{ending.seq}"))  # = JobRecord.webhook_id
            try:
                prepared = self.publisher.preparer.prepare(
                    body, tenant=ending.tenant, job_id=delivery_id, internal=True
                )
            except OffloadError as exc:
                logger.error("Cannot queue the webhook of job %s: %s", ending.job_id, exc)
                self.store.timers.outbox_done(ending.job_id, lease)
                continue
            trace = TraceCarrier.parse(ending.traceparent, ending.tracestate)
            ready.append((ending, replace(prepared, trace=trace) if trace is not None else prepared))
        # One round of confirms for the whole claim; an unconfirmed one keeps its claim (retaken later).
        errors = self.publisher.enqueue_many([prepared for _, prepared in ready])
        for (ending, _), error in zip(ready, errors, strict=True):
            if error is None:
                self.store.timers.outbox_done(ending.job_id, lease)
        failed = [error for error in errors if error is not None]
        if failed:
            raise failed[0]
        return len(endings)

    def migrate_layout_once(self) -> None:
        """On this process's first loop, bring an older Redis layout to this code's (a no-op once done).

        Raises:
            StatusStoreUnavailable: Redis is unavailable (the next loop tries again).
        """
        if self.layout_checked:
            return
        migrated = self.store.janitor.migrate_layout()
        if migrated:
            logger.warning("Migrated %d job records to the current Redis layout.", migrated)
        self.layout_checked = True

    def trim_if_due(self) -> None:
        """Now and then, drop index entries of expired records (housekeeping that rides this loop).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        if time.monotonic() < self.next_trim:
            return
        self.next_trim = time.monotonic() + TRIM_INTERVAL
        removed = self.store.janitor.trim_indexes()
        if removed:
            logger.info("Dropped %d index entries of expired job records.", removed)

    def recover_stalled_if_due(self, *, force: bool = False) -> int:
        """Now and then, deliver again every job whose record says running past any possible end.

        No attempt outlives its time limit plus the hard-limit grace (the worker process ends
        itself first), so a record still ``running`` a margin after that lost its ending: Redis
        lost the last second of writes in a crash (F9), or the message was gone while the record
        said running. BullMQ calls these stalled jobs and moves them back to wait; here the stored
        message is published again, so the job runs as a marked redelivery (its dedupe markers
        guard effects already done), and a job that keeps stalling is quarantined ``dead`` by the
        unfinished-deliveries limit. Returns how many were delivered again.

        Raises:
            DependencyError: Redis or RabbitMQ is unavailable (the next look retries).
        """
        if not force and time.monotonic() < self.next_stall_check:
            return 0
        self.next_stall_check = time.monotonic() + STALL_INTERVAL
        contracts = self.publisher.preparer.registry

        def overdue_ms(job_type: str) -> int:
            limit = contracts.get(job_type).time_limit if job_type in contracts.names else 3600.0
            return int((limit + self.hard_limit_grace + STALL_MARGIN) * 1000)

        stalled = self.store.janitor.claim_stalled(overdue_ms)
        for index, (job_id, message, _) in enumerate(stalled):
            logger.warning("Job %s is running past any possible end; delivering it again.", job_id)
            try:
                self.publisher.republish(message.encode())
            except DependencyError:
                for _, _, claim in stalled[index:]:
                    self.store.janitor.release_stalled(claim)
                raise
        if stalled:
            logger.info("Delivered %d stalled job(s) again.", len(stalled))
        return len(stalled)

    def unpark_if_due(self) -> int:
        """About once a second, schedule (due now) the parked jobs of resumed queues and job types.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        if self.pauses is None or time.monotonic() < self.next_unpark:
            return 0
        self.next_unpark = time.monotonic() + UNPARK_INTERVAL
        moved = self.pauses.unpark_resumed()
        if moved:
            logger.info("Resumed %d parked job(s).", moved)
        return moved

    def wake_waiting_if_due(self) -> int:
        """Now and then, wake jobs waiting for a concurrency slot freed by an expired lease.

        Raises:
            DependencyError: Redis or RabbitMQ is unavailable (the next sweep retries).
        """
        if self.slots is None or time.monotonic() < self.next_slot_sweep:
            return 0
        self.next_slot_sweep = time.monotonic() + SLOT_SWEEP_INTERVAL
        return self.slots.sweep()

    def promote_due(self) -> int:
        """Promote every job due now; returns how many were published.

        Raises:
            DependencyError: Redis or RabbitMQ is unavailable (the claims are retaken later).
        """
        total = 0
        while True:
            claim = self.store.timers.claim_due(limit=self.batch, lease_ms=LEASE_MS)
            for job_id in claim.lost:
                logger.error("Job %s was due but has no record or stored message: it cannot run.", job_id)
                if self.metrics is not None:
                    self.metrics.lost("schedule")
            if not claim.jobs:
                return total
            for index, (job_id, message) in enumerate(claim.jobs):
                try:
                    self.publisher.republish(message)
                except DependencyError:
                    for unpublished, _ in claim.jobs[index:]:
                        self.store.timers.release(unpublished, claim.lease)
                    raise
                self.store.timers.promoted(job_id, claim.lease)
                total += 1
            if len(claim.jobs) < self.batch:
                return total

    def seconds_until_due(self) -> float:
        """How long to sleep before the next job is due (at most :data:`POLL_INTERVAL`).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        first = self.store.timers.next_due()
        if first is None:
            return POLL_INTERVAL
        return max(0.0, min(POLL_INTERVAL, (first - now_ms()) / 1000))


class PromoterMiddleware(Middleware):
    """Runs a :class:`DuePromoter` in a thread of each Dramatiq worker process."""

    def __init__(self, promoter: DuePromoter) -> None:
        self.promoter = promoter
        self.stopping = threading.Event()
        #: Set by :meth:`nudge`: something is in the outbox, run the loop now.
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None

    def nudge(self) -> None:
        """Ask the loop to run now (a job with a callback URL ended in this process). Cheap, thread-safe."""
        self.wake.set()

    def after_worker_boot(self, _broker: Any, _worker: Any) -> None:
        """Start the promoter thread once the worker is up."""
        self.stopping.clear()
        self.thread = threading.Thread(target=self._loop, name="offload-promoter", daemon=True)
        self.thread.start()

    def before_worker_shutdown(self, _broker: Any, _worker: Any) -> None:
        """Stop the promoter thread before the worker stops."""
        self.stopping.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.wake.clear()  # before the work: a nudge that comes during it makes the wait below return at once
            try:
                self.promoter.migrate_layout_once()
                self.promoter.unpark_if_due()
                promoted = self.promoter.promote_due() + self.promoter.queue_webhooks()
                self.promoter.trim_if_due()
                self.promoter.recover_stalled_if_due()
                self.promoter.wake_waiting_if_due()
                if promoted:
                    logger.debug("Promoted %d due jobs.", promoted)
                wait = 0.0 if promoted else self.promoter.seconds_until_due()
            except DependencyError as exc:
                logger.warning("Cannot promote due jobs now: %s", exc)
                wait = 2.0
            except Exception:
                logger.exception("The promoter failed; retrying.")
                wait = 2.0
            if wait:
                self.wake.wait(wait)
