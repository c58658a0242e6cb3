"""The worker runtime: what happens around every handler call.

For each delivered message the runtime opens an attempt in the status store, runs the handler with
a :class:`JobContext`, and ends the attempt: ``succeeded`` with the result, ``retrying`` with a
backoff (the retry waits in Redis, not in RabbitMQ, so it never outlives ``consumer_timeout``),
``failed``, ``cancelled`` or ``dead``. State is written inside the actor body, never in a
middleware hook whose errors Dramatiq would swallow (reliability-security.md D5).

What Dramatiq sees: a message is acked when the job succeeded, was cancelled or will be retried
by Offload; it is dead-lettered (``Q.XQ``) when the job failed for good or died; and it is retried
by Dramatiq itself only when the status store is unreachable (so no state is lost).
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from dramatiq.middleware import CurrentMessage, TimeLimitExceeded
from pydantic import BaseModel

from offload import tracing
from offload.contracts import JobContract
from offload.errors import (
    DependencyError,
    JobCancelled,
    JobFailed,
    PermanentJobError,
    Refused,
    TransientJobError,
    ValidationFailed,
)
from offload.logs import job_logging
from offload.publish import Publisher
from offload.status import JobState, Started, StatusStore, now_ms
from offload.status.pauses import Pauses
from offload.submission import FollowUp
from offload.wire_checks import invalid_message
from offload.worker.adoption import Adopter, Adoption
from offload.worker.context import JobContext, Resources
from offload.worker.end_writer import EndWriter
from offload.worker.metrics import JobMetrics
from offload.worker.slots import SlotKeeper
from offload.worker.start_combiner import StartCombiner
from offload.worker.traced import delivery_span

logger = logging.getLogger(__name__)

#: A handler takes the job's context and its validated payload and returns a JSON-able result.
Handler = Callable[[JobContext, Any], Any]

#: Times a job may be held back without trying (``TransientJobError(counted=False)``) before such
#: waits count as attempts too, so that a job behind a circuit that never closes still ends.
MAX_DEFERRALS = 100

_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


@dataclass(frozen=True)
class Runtime:
    """Runs handlers for one worker process.

    Args:
        store: the job status store.
        publisher: used for follow-up jobs.
        max_unfinished: deliveries that may end without the job finishing before it is ``dead``.
        on_outbox: called after an attempt of a job with a callback URL ends, so the webhook
            promoter of this process queues its delivery now rather than at its next poll.
        metrics: counts how attempts end and how long jobs waited (none in tests that need none).
        backoff_scale: factor on every retry backoff (``OFFLOAD_RETRY_BACKOFF_SCALE``; 1 but in tests).
        slots: concurrency limits per key (a job of a limited contract runs only with a slot).
        pauses: paused queues and job types (their jobs are parked, not started).
        adopter: records jobs published on the wire without a record, after HTTP's checks.
        resources: what the worker's handlers share, reached with ``ctx.resource(Type)``.
        end_writer: takes the ``succeeded`` end of a delivered job without a callback URL,
            follow-ups or a concurrency slot off the job's thread (see ``offload.worker.end_writer``).
    """

    store: StatusStore
    publisher: Publisher
    max_unfinished: int = 3
    on_outbox: Callable[[], None] | None = None
    metrics: JobMetrics | None = None
    slots: SlotKeeper | None = None
    pauses: Pauses | None = None
    adopter: Adopter | None = None
    backoff_scale: float = 1.0
    resources: Resources = field(default_factory=Resources)
    #: Writes ``succeeded`` ends in batches and acks their messages after (none: each end synchronous).
    end_writer: EndWriter | None = None
    #: Sends the starts of jobs begun at the same moment in one round trip (none: each alone).
    starts: StartCombiner | None = None

    def actor_fn(self, contract: JobContract, handler: Handler) -> Callable[[str, dict[str, Any]], None]:
        """The function Dramatiq calls for ``contract``: ``(job_id, payload)``, the same for every actor."""

        def run(*args: Any, **kwargs: Any) -> None:
            job_id, payload = kwargs.get("job_id"), kwargs.get("payload", {})
            if args or set(kwargs) - {"job_id", "payload"} or not isinstance(job_id, str):
                self._refuse(contract, job_id, invalid_message())
            self.run(contract, handler, job_id, payload)

        run.__name__ = run.__qualname__ = contract.name.replace(".", "_")
        return run

    def run(self, contract: JobContract, handler: Handler, job_id: str, payload: dict[str, Any]) -> None:
        """Process one delivery of job ``job_id``.

        A job published on the wire without a record is adopted (recorded, with its message,
        after the checks HTTP applies) before it can be parked or wait for a slot, so that the
        paths that wake it later find it; in the common case, when it opens its attempt.

        Raises:
            JobFailed: the job ended for good (failed, dead, or refused at adoption); Dramatiq
                dead-letters the message.
            DependencyError: the status store or broker is unavailable; Dramatiq retries the message.
        """
        if self.adopter is not None:
            message = CurrentMessage.get_current_message()
            # A stranger's message is checked and recorded before anything trusts it; only Offload's
            # own messages run a job by its existing record (see ``offload.worker.adoption``).
            if (
                message is not None
                and not self.adopter.trusts(message)
                and self._adopt(contract, job_id, payload) == "drop"
            ):
                return
        if self.pauses is not None:
            target = self.pauses.paused_target(contract.queue, contract.name)
            if target is not None:
                if self._recorded(contract, job_id, payload):
                    self._park(target, job_id)
                return
        key = self.slots.key_of(contract, payload) if self.slots is not None else None
        if key is None:
            self._run(contract, handler, job_id, payload)
            return
        assert self.slots is not None
        if not self._recorded(contract, job_id, payload) or not self.slots.enter(key, job_id):
            return  # withdrawn; or it waits its turn, and the job that frees a slot wakes it
        try:
            # its slot's next job must find it ended: the end is written before the slot is left
            self._run(contract, handler, job_id, payload, batched_end=False)
        finally:
            self.slots.leave(key, job_id)

    def _recorded(self, contract: JobContract, job_id: str, payload: Any) -> bool:
        """Make sure the job has a record before it parks or waits: adopt it if it has none.

        Returns False for a job its publisher withdrew (its late message is dropped), or one whose
        adoption drops this delivery.

        Raises:
            JobFailed: adoption refused the job.
        """
        presence = self.store.queries.presence(job_id)
        if presence == "withdrawn":
            logger.info("Dropping job %s: its publisher withdrew it (the broker had not confirmed it).", job_id)
            return False
        return presence != "missing" or self._adopt(contract, job_id, payload) == "run"

    def _park(self, target: str, job_id: str) -> None:
        """Park the job instead of starting it: its queue or type is paused (see ``offload.status.pauses``)."""
        assert self.pauses is not None
        message = CurrentMessage.get_current_message()
        self.pauses.park(target, job_id, message.message_timestamp if message is not None else now_ms())
        logger.info("Job %s parked: %s is paused.", job_id, target)

    def _run(
        self, contract: JobContract, handler: Handler, job_id: str, payload: dict[str, Any], *, batched_end: bool = True
    ) -> None:
        if tracing.enabled():  # the job's spans continue its message's trace (offload.worker.traced)
            message = CurrentMessage.get_current_message()
            with delivery_span(contract.name, contract.queue, job_id, message):
                self._run_job(contract, handler, job_id, payload, batched_end=False)  # the finish write in its span
            return
        self._run_job(contract, handler, job_id, payload, batched_end=batched_end)

    def _run_job(
        self, contract: JobContract, handler: Handler, job_id: str, payload: dict[str, Any], *, batched_end: bool
    ) -> None:
        with tracing.span("offload.state.start"):
            started = self._open(contract, job_id, payload)
        if started is None:
            return
        message = CurrentMessage.get_current_message()
        if self.metrics is not None and message is not None:
            self.metrics.waited(contract.queue, contract.name, time.time() - message.message_timestamp / 1000)
        with job_logging(job_id=job_id, tenant=started.tenant, job_type=contract.name, attempt=str(started.attempt)):
            ctx = JobContext(
                job_id=job_id,
                job_type=contract.name,
                queue=contract.queue,
                _metrics=self.metrics,
                tenant=started.tenant,
                attempt=started.attempt,
                store=self.store,
                parent_id=started.parent_id,
                last_attempt=started.try_number > started.max_retries,
                _cancel_requested=started.cancel_requested,
                _last_poll=time.monotonic(),  # start() just read the cancel flag
                resources=self.resources,
            )
            try:
                self._attempt(contract, handler, ctx, payload, started, batched_end=batched_end)
            finally:
                if started.has_callback and self.on_outbox is not None:
                    self.on_outbox()

    # -- opening an attempt ------------------------------------------------------------------

    def _open(self, contract: JobContract, job_id: str, payload: Any) -> Started | None:
        if self.starts is not None:
            started = self.starts.start(job_id)
        else:
            started = self.store.lifecycle.start(job_id, max_unfinished=self.max_unfinished)
        if started.outcome == "missing":
            if self._adopt(contract, job_id, payload) == "drop":
                return None
            started = self.store.lifecycle.start(job_id, max_unfinished=self.max_unfinished)
        if started.outcome == "run":
            return started
        if started.outcome == "dead":
            logger.error("Job %s is dead: its worker stopped before it finished too many times.", job_id)
            raise JobFailed(f"Job {job_id} was delivered too many times without finishing.")
        if started.outcome == "aborted":
            logger.info("Dropping job %s: its publisher withdrew it (the broker had not confirmed it).", job_id)
        else:
            logger.info("Skipping a duplicate delivery of job %s, which is already %s.", job_id, started.state)
        return None

    def _refuse(self, contract: JobContract, job_id: Any, refusal: Refused) -> NoReturn:
        """Record, count and log why a delivered message may not run, and dead-letter it."""
        message = CurrentMessage.get_current_message()
        if self.adopter is not None:
            tenant = self.adopter.owner(message)
            self.adopter.refuse(contract.queue, job_id, message, refusal, tenant=tenant, job_type=contract.name)
        raise JobFailed(str(refusal))

    def _adopt(self, contract: JobContract, job_id: str, payload: Any) -> Adoption:
        """Record a job published without one (see ``offload.worker.adoption``); say whether this delivery runs.

        Raises:
            JobFailed: it may not run (its refusal is recorded); Dramatiq dead-letters the message.
            PermanentJobError: there is no message to adopt it from (not a delivery).
        """
        message = CurrentMessage.get_current_message()
        if message is None:
            raise PermanentJobError(f"Job {job_id} has no record and no message to adopt it from.")
        if self.adopter is None:
            raise PermanentJobError(f"Job {job_id} has no record, and this worker adopts none.")
        try:
            return self.adopter.adopt(contract, job_id, payload, message)
        except Refused as refusal:
            raise JobFailed(str(refusal)) from None

    # -- running it --------------------------------------------------------------------------

    def _attempt(
        self,
        contract: JobContract,
        handler: Handler,
        ctx: JobContext,
        payload: dict[str, Any],
        started: Started,
        *,
        batched_end: bool = True,
    ) -> None:
        try:
            parsed = contract.parse(payload)
        except ValidationFailed as exc:
            # Accepted by a process that checked only the registered JSON Schema (or an older model):
            # the worker's own model is the last word, and the job fails naming the fields.
            named = "; ".join(f"{item['field']}: {item['problem']}" for item in exc.errors[:5]) or exc.message
            self._fail(ctx, "invalid_payload", f"The payload does not match the model of {contract.name!r}: {named}")
            return
        try:
            ctx.raise_if_cancelled()
            with tracing.span("offload.run"):
                result = _jsonable(handler(ctx, parsed))
            if started.has_follow_ups:
                self._publish_follow_ups(ctx)
        except JobCancelled:
            self._end(ctx, JobState.CANCELLED, error=("cancelled", "The job was cancelled while it ran."))
            logger.info("Job cancelled while running.")
        except (PermanentJobError, ValidationFailed) as exc:
            self._fail(ctx, exc.code, exc.message)
        except DependencyError:
            raise
        except TimeLimitExceeded:
            self._failed_attempt(
                contract,
                ctx,
                started,
                "timed_out",
                f"The attempt exceeded its time limit of {contract.time_limit:g} s.",
            )
        except MemoryError:
            # The process is at its memory limit (RLIMIT_AS, a cgroup's, the machine's): worth
            # retrying once other jobs have let go of theirs; when the retries run out it fails.
            self._failed_attempt(
                contract, ctx, started, "resource_limit", "The job needed more memory than the worker may use."
            )
        except Exception as exc:
            own_code = getattr(exc, "code", None)
            code = own_code if isinstance(own_code, str) else "error"
            retry_after = exc.retry_after if isinstance(exc, TransientJobError) else None
            counted = exc.counted if isinstance(exc, TransientJobError) else True
            self._failed_attempt(contract, ctx, started, code, describe(exc), retry_after=retry_after, counted=counted)
        else:
            # a webhook, a follow-up reading this result: they must find the job ended
            synchronous = started.has_callback or started.has_follow_ups or not batched_end
            writer = None if synchronous else self.end_writer
            message = CurrentMessage.get_current_message() if writer is not None else None
            if message is None:
                self._end(ctx, JobState.SUCCEEDED, result=result)
                return
            assert writer is not None
            writer.submit(message.message_id, ctx.job_id, ctx.attempt, result)
            if self.metrics is not None:
                self.metrics.ended(ctx.queue, ctx.job_type, JobState.SUCCEEDED.value)

    def _failed_attempt(
        self,
        contract: JobContract,
        ctx: JobContext,
        started: Started,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        counted: bool = True,
    ) -> None:
        if not counted and self.store.lifecycle.deferrals(ctx.job_id) < MAX_DEFERRALS:
            # Held back before trying (an open circuit): wait, and run again as the same attempt.
            delay = max(retry_after or 0.0, backoff(contract, 1) * self.backoff_scale)
            self._end(
                ctx, JobState.RETRYING, error=(code, message), retry_at=now_ms() + int(delay * 1000), counted=False
            )
            logger.info("Attempt %d held back (%s); trying in %.1f s.", ctx.attempt, message, delay)
            return
        if started.try_number <= started.max_retries:
            delay = max(
                backoff(contract, started.try_number) * self.backoff_scale,
                min(retry_after or 0.0, contract.retry.max_backoff),
            )
            self._end(ctx, JobState.RETRYING, error=(code, message), retry_at=now_ms() + int(delay * 1000))
            logger.warning("Attempt %d failed (%s); retrying in %.1f s.", ctx.attempt, message, delay)
            return
        self._fail(ctx, code, message, state=JobState(contract.exhausted_state))

    def _end(self, ctx: JobContext, state: JobState, **outcome: Any) -> None:
        """End the attempt in ``state`` (``outcome``: result, error, retry_at) and count it."""
        with tracing.span("offload.state.finish"):
            self.store.lifecycle.finish(ctx.job_id, ctx.attempt, state, **outcome)
        if self.metrics is not None:
            self.metrics.ended(ctx.queue, ctx.job_type, state.value)

    def _fail(self, ctx: JobContext, code: str, message: str, *, state: JobState = JobState.FAILED) -> None:
        self._end(ctx, state, error=(code, message))
        logger.warning("Job %s: %s", state.value, message)
        raise JobFailed(message)

    def _publish_follow_ups(self, ctx: JobContext) -> None:
        for index, spec in enumerate(self.store.queries.follow_ups(ctx.job_id)):
            prepared = self.publisher.preparer.prepare_follow_up(
                FollowUp.model_validate(spec), parent_id=ctx.job_id, index=index, tenant=ctx.tenant
            )
            self.publisher.enqueue(prepared)


def backoff(contract: JobContract, attempt: int) -> float:
    """Seconds before retry number ``attempt``: exponential from ``min_backoff``, capped, with jitter."""
    policy = contract.retry
    ceiling = min(policy.max_backoff, policy.min_backoff * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def describe(exc: BaseException) -> str:
    """A one-line, client-safe description of an exception: class and message, credentials masked."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    return _CREDENTIALS.sub("***@", text)[:500]


def _jsonable(result: Any) -> Any:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        raise PermanentJobError("The handler returned a result that is not JSON.") from None
    return result
