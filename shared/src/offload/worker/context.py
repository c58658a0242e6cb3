"""What a job handler gets besides its payload: who it is, progress reporting and cancellation."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from offload.errors import JobCancelled, StatusStoreUnavailable
from offload.status import StatusStore

if TYPE_CHECKING:
    from offload.worker.metrics import JobMetrics

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between two progress writes of one job (the last report always waits for the next one).
PROGRESS_INTERVAL = 0.1
#: Seconds between two reads of the cancel flag when a handler polls ``cancelled``.
CANCEL_POLL_INTERVAL = 0.25


class Resources:
    """What a worker's handlers share (a mail session, a storage client), found by class.

    A worker spec builds them once per process; a handler reaches one with ``ctx.resource(Type)``,
    as arq's handlers find theirs in ``ctx``, but typed.
    """

    def __init__(self, objects: Iterable[object] = ()) -> None:
        self._objects = list(objects)

    def find(self, kind: type[T]) -> T | None:
        """The first object that is a ``kind``, or ``None``."""
        return next((obj for obj in self._objects if isinstance(obj, kind)), None)

    def get(self, kind: type[T]) -> T:
        """The first object that is a ``kind``.

        Raises:
            LookupError: the worker built none (its spec's ``resources`` builder does not make one).
        """
        found = self.find(kind)
        if found is None:
            raise LookupError(f"This worker has no {kind.__name__}: its spec's resources builder must make one.")
        return found

    def __add__(self, others: Iterable[object]) -> Resources:
        return Resources([*self._objects, *others])


@dataclass
class JobContext:
    """Handed to every handler with its payload. Not shared between threads.

    Attributes:
        job_id: the job's id (also the Dramatiq message id): the key for idempotent side effects.
        job_type: the contract name.
        tenant: the tenant the job belongs to.
        attempt: 1 for the first attempt, 2 after a retry or redelivery, and so on.
        parent_id: the job this one follows up, if any.
        last_attempt: no retry follows this attempt if it fails (a handler may report what is
            still failing in its result instead of raising).
    """

    job_id: str
    job_type: str
    tenant: str
    attempt: int
    store: StatusStore
    parent_id: str | None = None
    last_attempt: bool = False
    #: The queue the job came from.
    queue: str = ""
    #: What the worker's handlers share; see :meth:`resource`.
    resources: Resources = field(default_factory=Resources)
    _metrics: JobMetrics | None = None
    _cancel_requested: bool = False
    _last_write: float = field(default=0.0)
    _last_poll: float = field(default=0.0)

    def resource(self, kind: type[T]) -> T:
        """The worker's shared object of class ``kind`` (built by its spec's ``resources`` builder).

        Raises:
            LookupError: the worker has none.
        """
        return self.resources.get(kind)

    def progress(self, percent: float, message: str = "") -> None:
        """Report progress (0-100, plus an optional short message), at most every 100 ms.

        Raises:
            JobCancelled: a cancel was requested; the handler should let it propagate.
        """
        now = time.monotonic()
        if now - self._last_write >= PROGRESS_INTERVAL or percent >= 100:
            self._last_write = self._last_poll = now
            state, cancel = self.store.lifecycle.progress(self.job_id, self.attempt, int(percent), message[:200])
            self._cancel_requested = cancel or state == "cancelled"
        self.raise_if_cancelled()

    def log(self, line: str) -> None:
        """Write a short line to the job's own log, for its users and operators to read.

        The line shows at ``GET /v1/jobs/{id}/logs``, in the job's event stream and on its admin
        page: what someone following this job wants to know, such as "fetched 20,000 rows". Kept
        with the job's record (the newest 200 lines, 500 characters each) and for as long. A
        line that cannot be written is only logged: the job goes on.
        """
        try:
            self.store.lifecycle.log(self.job_id, self.attempt, line)
        except StatusStoreUnavailable:
            logger.warning("Could not write to the log of job %s: %s", self.job_id, line[:200])

    @property
    def cancelled(self) -> bool:
        """True once a cancel was requested (checked against Redis at most every 250 ms)."""
        now = time.monotonic()
        if not self._cancel_requested and now - self._last_poll >= CANCEL_POLL_INTERVAL:
            self._last_poll = now
            self._cancel_requested = self.store.queries.cancel_requested(self.job_id)
        return self._cancel_requested

    def raise_if_cancelled(self) -> None:
        """Stop here if a cancel was requested.

        Raises:
            JobCancelled: a cancel was requested.
        """
        if self.cancelled:
            raise JobCancelled("The job was cancelled while it ran.")

    def count(self, event: str) -> None:
        """Count a notable event of this job in the worker's metrics (``offload_job_events_total``).

        ``event`` must be a literal of the handler's code (``"duplicate_not_sent"``), never data.
        """
        if self._metrics is not None:
            self._metrics.event(self.queue, self.job_type, event)

    @property
    def child_results(self) -> dict[str, Any]:
        """What this flow node's children left it, by node name (``{}`` for a job that is no such node).

        A succeeded child's result; a child that did not succeed behind a ``continue`` edge as
        ``{"state", "error": {"code", "message"}}``; one behind an ``ignore`` edge is left out
        (see :mod:`offload.flows`). Read from the children's records when asked.

        Raises:
            StatusStoreUnavailable: Redis is unavailable (the attempt is retried).
        """
        return self.store.flows.child_results(self.job_id)

    def parent_result(self) -> Any:
        """The result of the job this one follows up (``None`` when there is no parent)."""
        if not self.parent_id:
            return None
        return self.store.queries.result(self.parent_id)
