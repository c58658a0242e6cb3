"""The submit sequence: quota held, record written, message published and confirmed, or all undone.

Order matters (reliability-security.md F5, F8): the record is written first, so a job is never on
the broker without a readable state; if the broker then does not confirm, the record is removed
again (with a tombstone that makes a late-arriving message be dropped), so a client that got 503
never finds a job stuck in ``queued``. The quota units a job takes are held for the whole
sequence and given back, in one place, unless the job went through.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from offload.errors import BrokerUnavailable, Conflict, StatusStoreUnavailable
from offload.publish.results import Submitted
from offload.publish.transport import Transport
from offload.status import StatusStore, now_ms, redis_errors
from offload.status.quotas import Quotas
from offload.submission import PreparedJob
from offload.tracing import SpanKind, TraceCarrier, carrier, enabled, span
from offload.wire import encode_message

logger = logging.getLogger(__name__)


@dataclass
class QuotaHold:
    """Quota units taken for some jobs: given back when the hold ends, but for the jobs kept."""

    quotas: Quotas
    jobs: list[PreparedJob]
    kept: set[str] = field(default_factory=set)

    def keep(self, jobs: Sequence[PreparedJob] | None = None) -> None:
        """The jobs (all, by default) went through: their units stay taken."""
        self.kept.update(job.job_id for job in (self.jobs if jobs is None else jobs))

    def _give_back(self) -> None:
        back = [job for job in self.jobs if job.job_id not in self.kept and job.contract.quota]
        try:
            with redis_errors():
                for job in back:
                    self.quotas.give_back(
                        job.tenant,
                        str(job.contract.quota),
                        job.contract.units(job.payload),
                        limit=job.contract.policy.quota_per_hour,
                    )
        except StatusStoreUnavailable:
            logger.warning("Could not give back the quota of %d job(s); Redis is unavailable.", len(back))


@contextlib.contextmanager
def quota_held(quotas: Quotas, jobs: Sequence[PreparedJob]) -> Iterator[QuotaHold]:
    """Take the jobs' quota units, all or nothing; give back on leaving those not kept.

    Raises:
        QuotaExceeded: one quota is used up (nothing stays counted).
        StatusStoreUnavailable: Redis is unavailable (nothing stays counted).
    """
    hold = QuotaHold(quotas, [])
    try:
        with redis_errors():
            for job in jobs:
                if job.contract.quota:
                    quotas.take(
                        job.tenant,
                        job.contract.quota,
                        job.contract.units(job.payload),
                        limit=job.contract.policy.quota_per_hour,
                    )
                hold.jobs.append(job)
    except BaseException:
        hold._give_back()
        raise
    try:
        yield hold
    finally:
        hold._give_back()


def record_fields(
    prepared: PreparedJob, *, created_at: int, idempotency_key: str | None = None, trace: TraceCarrier | None = None
) -> dict[str, str | int]:
    """The fields of a new job record: the one builder for every entrance (HTTP, the SDK, the wire).

    The record keeps what the job's message is made of, not the message itself
    (:func:`offload.wire.stored_message` rebuilds it), and its trace context (``trace``, else the
    job's own ``trace``; none while tracing is off), which ``JobRecord.trace_id`` reads.
    """
    trace = trace or prepared.trace
    payload = prepared.payload.model_dump(mode="json")
    fields: dict[str, str | int] = {
        "tenant": prepared.tenant,
        "type": prepared.contract.name,
        "queue": prepared.contract.queue,
        "priority": prepared.priority.value,
        "max_retries": prepared.max_retries,
        "created_at": created_at,
        "payload": json.dumps(payload, separators=(",", ":")),
    }
    for name, value in (
        ("callback_url", prepared.callback_url),
        ("batch_id", prepared.batch_id),
        ("parent_id", prepared.parent_id),
        ("idempotency_key", idempotency_key),
    ):
        if value:
            fields[name] = value
    if trace is not None:
        fields.update(trace.fields())
    if prepared.tags:
        fields["tags"] = json.dumps(prepared.tags, separators=(",", ":"))
    if prepared.metadata:
        fields["metadata"] = json.dumps(prepared.metadata, separators=(",", ":"), ensure_ascii=False)
    if prepared.follow_ups:
        fields["then"] = json.dumps([f.model_dump(mode="json") for f in prepared.follow_ups])
    return fields


def message_body(prepared: PreparedJob, *, created_at: int, trace: TraceCarrier | None = None) -> bytes:
    """The job's Dramatiq message, stamped with its record's ``created_at`` (what ``stored_message`` rebuilds).

    ``trace`` (else the job's own) goes into ``options.offload.traceparent``/``tracestate``.
    """
    trace = trace or prepared.trace
    return encode_message(
        job_id=prepared.job_id,
        job_type=prepared.contract.name,
        queue=prepared.contract.queue,
        payload=prepared.payload.model_dump(mode="json"),
        tenant=prepared.tenant,
        broker_priority=prepared.priority.broker_priority,
        timestamp_ms=created_at,
        **(trace.fields() if trace is not None else {}),
    )


class SubmitSequence:
    """Records and publishes prepared jobs for every entrance (HTTP, the SDK, schedules, follow-ups).

    Args:
        store: the job status store.
        transport: the broker (confirming).
        quotas: the tenants' quotas.
        publish_timeout: seconds a publish may take before it counts as failed.
        idempotency_ttl: seconds an ``Idempotency-Key`` is remembered.
    """

    def __init__(
        self,
        store: StatusStore,
        transport: Transport,
        quotas: Quotas,
        *,
        publish_timeout: float = 2.0,
        idempotency_ttl: int = 86_400,
    ) -> None:
        self.store = store
        self.transport = transport
        self.quotas = quotas
        self.publish_timeout = publish_timeout
        self.idempotency_ttl = idempotency_ttl

    def held(self, jobs: Sequence[PreparedJob]) -> contextlib.AbstractContextManager[QuotaHold]:
        """:func:`quota_held` on this sequence's quotas (the adopter holds a wire job's units so too)."""
        return quota_held(self.quotas, jobs)

    def enqueue(
        self, prepared: PreparedJob, *, idempotency_key: str | None = None, deadline: float | None = None
    ) -> Submitted:
        """Record and publish one prepared job.

        With a ``deadline``, the broker's confirm is waited for only until then (and never longer
        than ``publish_timeout``). A job whose confirm is late is withdrawn like a refused one and
        the caller gets ``BrokerUnavailable`` in time; if the message reaches the queue after all,
        the worker finds the withdrawn record and drops it, so the job neither runs unannounced nor
        is lost after a 202. A broker that is merely slow thus costs a retry, never an answer later
        than the caller's deadline (issue 9, F14: 202s that waited 1.5 s on a busy broker's confirm).

        Raises:
            QuotaExceeded: the tenant's quota for the type is used up.
            Conflict: ``idempotency_key`` was used with another submission.
            BrokerUnavailable: RabbitMQ did not take the message (the record is withdrawn).
            StatusStoreUnavailable: Redis is unavailable (nothing was published).
        """
        if prepared.delay is None and idempotency_key is None:
            self.transport.refuse_if_full(prepared.contract.queue)  # before any Redis work for a sure refusal
        attributes = _span_attributes(prepared) if enabled() else None
        with span("offload.publish", kind=SpanKind.PRODUCER, attributes=attributes), self.held([prepared]) as hold:
            trace = prepared.trace or carrier()  # the publish span's (none while tracing is off)
            body = self._record(prepared, idempotency_key, trace)
            if isinstance(body, Submitted):
                return body  # an idempotent replay costs nothing
            if prepared.delay is not None:
                hold.keep()
                return Submitted(prepared.job_id, "scheduled")
            wait = None if deadline is None else deadline - time.monotonic()
            try:
                self.transport.publish(
                    prepared.contract.queue,
                    body,
                    priority=prepared.priority.broker_priority,
                    timeout=self.publish_timeout,
                    wait=wait,
                    **_headers(trace),
                )
            except BrokerUnavailable:
                if not self._withdraw(prepared, idempotency_key):
                    raise
            hold.keep()
            return Submitted(prepared.job_id, "queued")

    def enqueue_batch(self, prepared: Sequence[PreparedJob]) -> list[BrokerUnavailable | None]:
        """Record and publish jobs together, their quota held; per job, None or the error that withdrew it.

        Raises:
            QuotaExceeded: a quota is used up (nothing was recorded).
            StatusStoreUnavailable: Redis is unavailable.
        """
        with self.held(prepared) as hold:
            errors = self._record_and_publish(prepared)
            hold.keep([job for job, error in zip(prepared, errors, strict=True) if error is None])
            return errors

    def enqueue_many(self, prepared: Sequence[PreparedJob]) -> list[BrokerUnavailable | None]:
        """Record and publish several prepared jobs with one round of broker confirms.

        For follow-up work the system queues itself (webhook deliveries): no quotas, no idempotency
        keys; a job whose (deterministic) id is already recorded is left as it is. Returns, per job,
        None when it is queued, scheduled or already known, or the error that withdrew its record.

        Raises:
            StatusStoreUnavailable: Redis is unavailable (jobs recorded before that stay queued).
        """
        return self._record_and_publish(prepared)

    def _record_and_publish(self, prepared: Sequence[PreparedJob]) -> list[BrokerUnavailable | None]:
        """Write each record, publish the immediate ones together, withdraw the records RabbitMQ refused."""
        with span("offload.publish", kind=SpanKind.PRODUCER, attributes={"offload.jobs": len(prepared)}):
            return self._record_and_publish_traced(prepared)

    def _record_and_publish_traced(self, prepared: Sequence[PreparedJob]) -> list[BrokerUnavailable | None]:
        immediate = []
        current = carrier()  # the publish span's (none while tracing is off)
        for index, job in enumerate(prepared):
            trace = job.trace or current
            body = self._record(job, None, trace)
            if isinstance(body, bytes) and job.delay is None:  # an existing job (a replayed id) is not sent again
                immediate.append((index, job, body, trace))
        sent = publish_traced(
            self.transport,
            [(p.contract.queue, body, p.priority.broker_priority) for _, p, body, _ in immediate],
            [trace for *_, trace in immediate] if current is not None else None,
            timeout=self.publish_timeout,
        )
        errors: list[BrokerUnavailable | None] = [None] * len(prepared)
        for (index, job, _, _), error in zip(immediate, sent, strict=True):
            if error is not None and not self._withdraw(job, None):
                errors[index] = error
        return errors

    def _record(
        self, prepared: PreparedJob, idempotency_key: str | None, trace: TraceCarrier | None = None
    ) -> bytes | Submitted:
        created_at = now_ms()
        body = message_body(prepared, created_at=created_at, trace=trace)
        fields = record_fields(prepared, created_at=created_at, idempotency_key=idempotency_key, trace=trace)
        scheduled_for = created_at + int(prepared.delay * 1000) if prepared.delay is not None else None
        created = self.store.lifecycle.create(
            prepared.job_id,
            fields,
            scheduled_for=scheduled_for,
            idempotency_key=idempotency_key,
            fingerprint=prepared.fingerprint,
            idempotency_ttl=self.idempotency_ttl,
        )
        if created.outcome == "conflict":
            raise Conflict(
                "This Idempotency-Key was already used with a different request.",
                code="idempotency_key_reused",
                job_id=created.job_id,
            )
        if created.outcome == "exists":
            record = self.store.queries.get(created.job_id)
            return Submitted(created.job_id, record.state.value if record else "queued", replayed=True)
        return body

    def _withdraw(self, prepared: PreparedJob, idempotency_key: str | None) -> bool:
        """Withdraw a job whose publish was not confirmed; True if a worker already took it.

        A taken job means the broker had the message and only its confirm went astray (a partition
        that heals mid-publish). Such a job is accepted after all: answering 503 for it would tell
        the client "not done" about a job that runs (an *unexpected* job, §6.0).
        """
        try:
            outcome = self.store.lifecycle.abort(
                prepared.job_id, tenant=prepared.tenant, idempotency_key=idempotency_key
            )
        except StatusStoreUnavailable:
            logger.error("Could not withdraw job %s after a failed publish; Redis is unavailable.", prepared.job_id)
            return False
        if outcome == "taken":
            logger.warning("Job %s was not confirmed by the broker, but a worker has it: accepted.", prepared.job_id)
        return outcome == "taken"


def _headers(trace: TraceCarrier | None) -> dict[str, dict[str, str]]:
    """The ``headers`` argument of a publish carrying ``trace`` as AMQP headers; none without one.

    Left out rather than None while tracing is off, so that a :class:`Transport` written before
    headers existed keeps working.
    """
    return {"headers": trace.fields()} if trace is not None else {}


def publish_traced(
    transport: Transport,
    messages: list[tuple[str, bytes, int | None]],
    traces: Sequence[TraceCarrier | None] | None,
    *,
    timeout: float,
) -> list[BrokerUnavailable | None]:
    """``transport.publish_many``, each message with its trace as AMQP headers (``traces``: None while off)."""
    if traces is None:
        return transport.publish_many(messages, timeout=timeout)
    headers = [trace.fields() if trace is not None else None for trace in traces]
    return transport.publish_many(messages, timeout=timeout, headers=headers)


def _span_attributes(prepared: PreparedJob) -> dict[str, str | int | float | bool]:
    """What a publish span says about its job (read only while tracing is on)."""
    return {
        "messaging.system": "rabbitmq",
        "messaging.destination.name": prepared.contract.queue,
        "offload.job_id": prepared.job_id,
        "offload.job_type": prepared.contract.name,
    }
