"""The worker's side of concurrency limits (see :mod:`offload.status.slots`).

Take a slot before a job runs, give it back after, renew it while the job runs, and wake the
jobs that waited.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from dramatiq.middleware import CurrentMessage

from offload.contracts import JobContract, Registry
from offload.errors import DependencyError
from offload.publish import Publisher
from offload.status import StatusStore
from offload.status.slots import Slots
from offload.wire import offload_options
from offload.worker.metrics import JobMetrics

logger = logging.getLogger(__name__)


class SlotKeeper:
    """Slots for the jobs of one worker process.

    Args:
        slots: the slots in Redis.
        store: the status store (a waiting job's stored message is published to wake it).
        publisher: publishes woken jobs.
        registry: the contracts, for each limit's default.
        limits: ``OFFLOAD_CONCURRENCY_LIMITS``: limit name -> how many at once, overriding the default.
        metrics: counts woken ids that had no record (lost jobs; none in tests that need none).
    """

    def __init__(
        self,
        slots: Slots,
        store: StatusStore,
        publisher: Publisher,
        registry: Registry,
        limits: Mapping[str, int] | None = None,
        metrics: JobMetrics | None = None,
    ) -> None:
        self.slots = slots
        self.metrics = metrics
        self.store = store
        self.publisher = publisher
        self.limits = {c.concurrency.name: c.concurrency.limit for c in registry if c.concurrency is not None}
        self.limits.update(limits or {})
        self.held: set[tuple[str, str]] = set()
        self.lock = threading.Lock()
        self.renewer: threading.Thread | None = None

    def key_of(self, contract: JobContract, payload: Any) -> str | None:
        """The concurrency key of the job now being processed (None if its contract has no limit)."""
        if contract.concurrency is None:
            return None
        message = CurrentMessage.get_current_message()
        tenant = offload_options(message.options).get("tenant") if message is not None else None
        return Slots.key(contract, tenant if isinstance(tenant, str) else "default", payload)

    def limit(self, key: str) -> int:
        """How many jobs with ``key`` may run at once."""
        return self.limits.get(key.split("|", 1)[0], 1)

    def enter(self, key: str, job_id: str) -> bool:
        """Take a slot for ``job_id``; False if it must wait (it will be woken when a slot frees).

        Raises:
            StatusStoreUnavailable: Redis is unavailable (Dramatiq retries the delivery).
        """
        if not self.slots.take(key, job_id, self.limit(key)):
            logger.info("Job %s waits for a slot of %s (at most %d at once).", job_id, key, self.limit(key))
            return False
        with self.lock:
            self.held.add((key, job_id))
            if self.renewer is None:
                self.renewer = threading.Thread(target=self._renew, name="offload-slot-renewer", daemon=True)
                self.renewer.start()
        return True

    def leave(self, key: str, job_id: str) -> None:
        """Give ``job_id``'s slot back and wake the jobs the free slots can start.

        A failure here is logged, not raised: the job has ended, and the slot's lease runs out by
        itself, after which the sweep wakes the waiters.
        """
        with self.lock:
            self.held.discard((key, job_id))
        try:
            self._wake(key, self.slots.give(key, job_id, self.limit(key)))
        except DependencyError as exc:
            logger.warning("Could not give back the slot of job %s now (%s); its lease will run out.", job_id, exc)

    def sweep(self) -> int:
        """Wake waiting jobs whose slots were freed by an expired lease (a worker that died).

        Raises:
            DependencyError: Redis or RabbitMQ is unavailable.
        """
        woken = 0
        for key in self.slots.keys_with_waiters():
            wake = self.slots.give(key, "", self.limit(key))
            self._wake(key, wake)
            woken += len(wake)
        return woken

    def _wake(self, key: str, job_ids: list[str]) -> None:
        for index, job_id in enumerate(job_ids):
            message = self.store.queries.stored_message(job_id)
            if message is None:
                self._not_woken(job_id)
                continue
            try:
                self.publisher.republish(message)
            except DependencyError:
                self.slots.wait_again(key, job_ids[index:])
                raise
            logger.info("Woke job %s: a slot of %s is free.", job_id, key)

    def _not_woken(self, job_id: str) -> None:
        """A waiter without a stored message: withdrawn by its publisher (fine), or lost (an error)."""
        if self.store.queries.presence(job_id) == "withdrawn":
            logger.info("Not waking job %s: its publisher withdrew it.", job_id)
            return
        logger.error("Job %s waited for a slot but has no record or stored message: it cannot run.", job_id)
        if self.metrics is not None:
            self.metrics.lost("slot")

    def _renew(self) -> None:
        interval = self.slots.lease_ms / 3000
        while True:
            threading.Event().wait(interval)
            with self.lock:
                held = list(self.held)
            for key, job_id in held:
                try:
                    self.slots.renew(key, job_id)
                except DependencyError as exc:
                    logger.warning("Could not renew the slot of job %s: %s", job_id, exc)
