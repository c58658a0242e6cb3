"""Adoption: a job published straight to RabbitMQ becomes a recorded job, checked as HTTP checks it.

A service may publish the wire format (``docs/wire-format.md``) without writing a record. Who
published a message is the AMQP ``user_id`` RabbitMQ validated (``offload.delivery``), never the
body. A message of Offload's own (trusted) broker users runs the job its record describes, and is
adopted as it was written only if that record was lost (a Redis that came back without its last
writes, reliability-security.md F9); any other user's message is *adopted* here, first of all
(before a paused queue or type parks it, a full concurrency slot makes it wait, or it runs), by
the checks an HTTP submission gets, with the same code (``offload.wire_checks``):

- a mapped publisher (``OFFLOAD_WIRE_PUBLISHERS``) for a tenant and a job type it may use
  (``unauthenticated_publisher``, ``tenant_not_allowed``, ``job_type_not_allowed``);
- the job id is a UUID equal to the message id, the type is not one of Offload's own, the message
  is no larger than an HTTP body, and the payload and ``options.offload`` pass
  :meth:`offload.submission.Preparer.prepare` (schema, bounds, the SSRF guard);
- the tenant's quotas, held as :mod:`offload.publish.sequence` holds them (``quota_exceeded``);
- the record is written as the HTTP entrance writes it (delay, idempotency key, callback URL,
  follow-ups, tags, metadata). A job id that already has a record is refused
  (``duplicate_job_id``) and that record left as it is, unless it is this very message delivered
  again; an idempotency key used before is the earlier job (same submission: this message is
  dropped) or refused (``idempotency_conflict``).

A refused job is recorded ``dead`` under the tenant :meth:`WireChecks.owner` names, with the
refusal's code, message and field problems, counted in ``offload_wire_refused_total{queue,
reason}``, logged as an error, and its message dead-lettered. Where no record can be written (no
mapped publisher, a malformed id, an id that is another job's), the reason is kept beside the dead
letter for the admin page (:meth:`StatusStore.note_dead_letter`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

import dramatiq
from dramatiq import Message
from dramatiq.middleware import Middleware

from offload import tracing
from offload.contracts import JobContract, Registry
from offload.delivery import RESERVED, delivery_of
from offload.errors import QuotaExceeded, Refused
from offload.publish import Publisher
from offload.publish.sequence import record_fields
from offload.status import JobState, now_ms
from offload.submission import PreparedJob, is_job_id
from offload.wire_checks import WireChecks, WireJob, unserved
from offload.worker.metrics import JobMetrics
from offload.worker.traced import message_trace

logger = logging.getLogger(__name__)

#: The largest payload a refused job's record keeps (a larger one shows as null).
MAX_SHOWN_PAYLOAD = 16_384

#: What becomes of a delivery after adoption: it runs (a new job, or this job's message again), or
#: it is acked without running (a delayed job waits in Redis; an idempotent replay is the earlier job).
Adoption = Literal["run", "drop"]


@dataclass(frozen=True)
class Adopter:
    """Records jobs published without a record, or records why they may not run.

    Args:
        publisher: its store keeps the records, its quotas and idempotency settings apply.
        checks: the checks a message passes (:class:`offload.wire_checks.WireChecks`).
        metrics: counts refusals (none in tests that need none).
    """

    publisher: Publisher
    checks: WireChecks
    metrics: JobMetrics | None = None

    def trusts(self, message: Message[Any]) -> bool:
        """Whether ``message`` was published by one of Offload's own broker users."""
        return self.checks.access.is_trusted(delivery_of(message).publisher)

    def owner(self, message: Message[Any] | None) -> str | None:
        """The tenant a refusal of ``message`` is recorded under (see :meth:`WireChecks.owner`)."""
        if message is None:
            return None
        return self.checks.owner(delivery_of(message).publisher, message.options)

    def adopt(self, contract: JobContract, job_id: Any, payload: Any, message: Message[Any]) -> Adoption:
        """Write the record of ``message``'s job after HTTP's checks, and say whether this delivery runs it.

        Raises:
            Refused: the job may not run; its refusal is recorded (and counted, and logged).
            StatusStoreUnavailable: Redis is unavailable (Dramatiq delivers the message again).
        """
        publisher = delivery_of(message).publisher
        try:
            wire = self.checks.check(
                contract,
                job_id,
                payload,
                message.options,
                publisher=publisher,
                message_id=message.message_id,
                size=len(_as_published(message)),
            )
            return self._record(wire, message)
        except Refused as refusal:
            tenant = None if refusal.code == "duplicate_job_id" else self.owner(message)  # never over another job
            self.refuse(contract.queue, job_id, message, refusal, tenant=tenant, job_type=contract.name)
            raise

    def _record(self, wire: WireJob, message: Message[Any]) -> Adoption:
        prepared, key = wire.prepared, wire.idempotency_key
        sequence = self.publisher.sequence
        # the publisher's trace, kept so that retries and the webhook stay in it (none while tracing is off)
        trace = message_trace(message) if tracing.enabled() else None
        fields = record_fields(prepared, created_at=message.message_timestamp, idempotency_key=key, trace=trace)
        try:
            with sequence.held([prepared]) as hold:  # as HTTP's submissions hold theirs
                created = self.publisher.store.lifecycle.create(
                    prepared.job_id,
                    fields,
                    scheduled_for=now_ms() + int(prepared.delay * 1000) if prepared.delay is not None else None,
                    idempotency_key=key,
                    fingerprint=prepared.fingerprint,
                    idempotency_ttl=sequence.idempotency_ttl,
                )
                if created.outcome == "created":
                    hold.keep()
        except QuotaExceeded as exc:
            raise Refused(exc.code, exc.message) from None
        if created.outcome == "conflict":
            raise Refused(
                "idempotency_conflict",
                f"The idempotency key was already used with another submission (job {created.job_id}).",
            )
        if created.outcome == "created":
            logger.info("Adopted job %s published on the wire (tenant %r).", prepared.job_id, prepared.tenant)
            return "drop" if prepared.delay is not None else "run"
        if created.job_id != prepared.job_id:
            logger.info(
                "Dropping job %s: its idempotency key and submission are job %s's, which it is.",
                prepared.job_id,
                created.job_id,
            )
            return "drop"
        return self._delivered_again(prepared, message)

    def _delivered_again(self, prepared: PreparedJob, message: Message[Any]) -> Adoption:
        """The job id has a record: this message's own (a redelivery), or another job's (refused).

        Raises:
            Refused: ``duplicate_job_id``: the record is another job's; it is left as it is.
        """
        record = self.publisher.store.queries.get(prepared.job_id)
        if (
            record is None
            or record.tenant != prepared.tenant
            or record.type != prepared.contract.name
            or record.created_at != message.message_timestamp
            or record.payload != prepared.payload.model_dump(mode="json")
        ):
            raise Refused("duplicate_job_id", f"Job {prepared.job_id} already exists; a job id names one job only.")
        return "drop" if record.state is JobState.SCHEDULED else "run"

    def refuse(
        self,
        queue: str,
        job_id: Any,
        message: Message[Any] | None,
        refusal: Refused,
        *,
        tenant: str | None,
        job_type: str,
    ) -> None:
        """Record, count and log why the message of ``job_id`` may not run (it is then dead-lettered).

        An existing record is never changed: the reason is then kept beside the dead letter.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        store = self.publisher.store
        recorded = False
        if message is not None and tenant is not None and is_job_id(job_id) and job_id == message.message_id:
            fields: dict[str, str | int] = {
                "tenant": tenant,
                "type": job_type,
                "queue": queue,
                "priority": "normal",
                "max_retries": 0,
                "created_at": message.message_timestamp,
                "payload": _shown_payload(message),
            }
            recorded = store.lifecycle.refuse(job_id, fields, (refusal.code, refusal.message), errors=refusal.errors)
        if message is not None and not recorded:
            store.janitor.note_dead_letter(str(message.message_id), refusal.code, refusal.message)
        if self.metrics is not None:
            self.metrics.refused(queue, refusal.code)
        logger.error("Refused job %r published on the wire (%s): %s", job_id, refusal.code, refusal.message)


def _as_published(message: Message[Any]) -> bytes:
    """The message as its publisher sent it, near enough to size it: without the delivery's stamp."""
    options = {k: v for k, v in message.options.items() if k != RESERVED}
    return message._replace(options=options).encode()


def _shown_payload(message: Message[Any]) -> str:
    """The payload a refused job's record shows: as sent, unless it is too large to keep."""
    kwargs = message.kwargs if isinstance(message.kwargs, dict) else {}
    shown = json.dumps(kwargs.get("payload"), separators=(",", ":"), default=str)
    return shown if len(shown) <= MAX_SHOWN_PAYLOAD else "null"


class UnservedMessages(Middleware):
    """Records why a message no actor of this worker serves is dead-lettered.

    Dramatiq rejects (dead-letters) a message whose ``actor_name`` names no actor of the worker
    that received it, with only a log line. A job id that names a record is then a job that
    ``GET /v1/jobs/{id}`` answers 404 for, forever. This records it ``dead`` with the reason:
    ``unknown_type`` (no contract has that name) or ``wrong_queue`` (a contract served from
    another queue), counted and logged like every refusal at adoption.
    """

    def __init__(self, adopter: Adopter, registry: Registry) -> None:
        self.adopter = adopter
        self.registry = registry

    def before_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        """Record the refusal of a message for an actor this worker does not have."""
        name = message.actor_name
        if name in broker.actors:
            return  # its actor ran and ended it: the runtime recorded why
        shown = str(name)[:100]
        refusal = unserved(self.registry, name, message.queue_name) or Refused(
            "unknown_type", f"No worker reading queue {str(message.queue_name)[:100]!r} serves {shown!r}."
        )
        queue = message.queue_name if message.queue_name in self.registry.queues else "other"
        kwargs = message.kwargs if isinstance(message.kwargs, dict) else {}
        try:
            self.adopter.refuse(
                queue, kwargs.get("job_id"), message, refusal, tenant=self.adopter.owner(message), job_type=shown
            )
        except Exception:  # a hook that raised would stop this worker's consumer
            logger.exception("Could not record why message %r is dead-lettered.", message.message_id)
