"""Adoption: a job published straight to RabbitMQ becomes a recorded job, checked as HTTP checks it.

A service may publish the wire format (``docs/wire-format.md``) without writing a record. The
worker that first receives such a message *adopts* it: it writes the record, with the message
stored, before anything can park the job (a paused queue or type), make it wait (a full
concurrency slot) or run it. Every path that later wakes a job (resume, a freed slot, a retry, a
stalled job's redelivery) publishes that stored message again, so an adopted job is never lost.

Adoption runs the checks an HTTP submission gets, by the same code, so that nothing a message
carries can do more than the same body sent to ``POST /v1/jobs``:

- the job id is a UUID and equals the message id (``invalid_job_id``);
- the tenant is well formed (``invalid_tenant``); the job type is not one of Offload's own
  (``internal_type``: a ``webhook.deliver`` or ``storage.cleanup`` Offload did not record itself
  never runs);
- the message is no larger than an HTTP body may be (``payload_too_large``);
- the payload and options pass :meth:`offload.submission.Preparer.prepare` (schema, retry bound,
  the SSRF guard on every URL a worker would fetch, the email domain allow-list), with the same
  error code and field paths;
- the tenant's quotas (held as :mod:`offload.publish.sequence` holds them: ``quota_exceeded``).

A refused job is recorded ``dead`` with the refusal's code, message and field problems (when its
id can name a record), counted in ``offload_wire_refused_total{queue, reason}``, logged as an
error, and its message dead-lettered. Where no record can be written (a malformed id or tenant),
the reason is kept beside the dead letter for the admin page (:meth:`StatusStore.note_dead_letter`).

The tenant still comes from ``options.offload.tenant``: whoever holds broker credentials may
publish as any tenant (``docs/wire-format.md`` says what that means and how to confine it).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq import Message
from dramatiq.middleware import Middleware

from offload import problems
from offload.contracts import JobContract, Priority, Registry
from offload.errors import ClientError, QuotaExceeded, Refused, ValidationFailed
from offload.publish import Publisher
from offload.publish.sequence import record_fields
from offload.submission import PreparedJob
from offload.wire import offload_options
from offload.worker.metrics import JobMetrics

logger = logging.getLogger(__name__)

#: The largest payload a refused job's record keeps (a larger one shows as null).
MAX_SHOWN_PAYLOAD = 16_384
#: What a tenant name may be, as in ``OFFLOAD_API_KEYS``.
TENANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Adopter:
    """Records jobs published without a record, or records why they may not run.

    Args:
        publisher: its store keeps the records, its preparer and quotas do the checks.
        max_message_bytes: the largest message adopted (``OFFLOAD_MAX_BODY_BYTES``, as for HTTP).
        metrics: counts refusals (none in tests that need none).
    """

    publisher: Publisher
    max_message_bytes: int
    metrics: JobMetrics | None = None

    def adopt(self, contract: JobContract, job_id: str, payload: Any, message: Message[Any]) -> None:
        """Write the record of ``message``'s job (its message stored), after HTTP's checks.

        A record that appeared meanwhile (another delivery adopted it) is left as it is.

        Raises:
            Refused: the job may not run; its refusal is recorded (and counted, and logged).
            StatusStoreUnavailable: Redis is unavailable (Dramatiq delivers the message again).
        """
        encoded = message.encode()
        tenant = self.tenant_of(message)
        try:
            prepared = self._check(contract, job_id, payload, message, tenant, len(encoded))
        except Refused as refusal:
            self.refuse(contract.queue, job_id, message, refusal, tenant=tenant, job_type=contract.name)
            raise
        fields = record_fields(prepared, created_at=message.message_timestamp)
        try:
            with self.publisher.sequence.held([prepared]) as hold:  # as HTTP's submissions hold theirs
                created = self.publisher.store.lifecycle.create(job_id, fields)
                if created.outcome == "created":
                    hold.keep()
        except QuotaExceeded as exc:
            over = Refused(exc.code, exc.message)
            self.refuse(contract.queue, job_id, message, over, tenant=tenant, job_type=contract.name)
            raise over from None
        if created.outcome != "created":
            return  # another delivery adopted it (its quota units went back)
        logger.info("Adopted job %s published without a record (tenant %r).", job_id, prepared.tenant)

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

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        store = self.publisher.store
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
            store.lifecycle.refuse(job_id, fields, (refusal.code, refusal.message), errors=refusal.errors)
        elif message is not None:
            store.janitor.note_dead_letter(str(message.message_id), refusal.code, refusal.message)
        if self.metrics is not None:
            self.metrics.refused(queue, refusal.code)
        logger.error("Refused job %r published on the wire (%s): %s", job_id, refusal.code, refusal.message)

    def _check(
        self, contract: JobContract, job_id: str, payload: Any, message: Message[Any], tenant: str | None, size: int
    ) -> PreparedJob:
        if not is_job_id(job_id) or job_id != message.message_id:
            raise Refused("invalid_job_id", "kwargs.job_id must be a UUID equal to the message's message_id.")
        if tenant is None:
            raise Refused("invalid_tenant", "options.offload.tenant must be 1-64 letters, digits, _ or -.")
        if contract.internal:
            raise Refused(
                "internal_type", f"{contract.name!r} jobs are created by Offload itself; they cannot be published."
            )
        if size > self.max_message_bytes:
            raise Refused("payload_too_large", f"The message is larger than {self.max_message_bytes} bytes.")
        block = offload_options(message.options)
        options: dict[str, Any] = {}
        if "max_retries" in block:
            options["max_retries"] = block["max_retries"]
        levels = {p.broker_priority: p.value for p in Priority}
        asked = message.options.get("broker_priority")
        if asked is not None:
            if not isinstance(asked, int) or isinstance(asked, bool) or asked not in levels:
                raise Refused(
                    "validation_failed",
                    "Invalid 'options.broker_priority'.",
                    [problems.in_body("options.broker_priority", "literal_error", f"must be one of {sorted(levels)}")],
                )
            options["priority"] = levels[asked]
        body = {"type": contract.name, "payload": payload, "options": options}
        try:
            return self.publisher.preparer.prepare(body, tenant=tenant, job_id=job_id)
        except ValidationFailed as exc:
            raise Refused(exc.code, exc.message, exc.errors) from None
        except ClientError as exc:
            raise Refused(exc.code, exc.message) from None

    @staticmethod
    def tenant_of(message: Message[Any]) -> str | None:
        """The tenant ``message`` names (``"default"`` if none), or None if it is malformed."""
        tenant = offload_options(message.options).get("tenant", "default")
        return tenant if isinstance(tenant, str) and TENANT.match(tenant) else None


def _shown_payload(message: Message[Any]) -> str:
    """The payload a refused job's record shows: as sent, unless it is too large to keep."""
    kwargs = message.kwargs if isinstance(message.kwargs, dict) else {}
    shown = json.dumps(kwargs.get("payload"), separators=(",", ":"), default=str)
    return shown if len(shown) <= MAX_SHOWN_PAYLOAD else "null"


def is_job_id(value: Any) -> bool:
    """True if ``value`` is a job id as Offload writes them: a UUID in its canonical form."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


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
        if isinstance(name, str) and name in self.registry.names:
            right = self.registry.get(name).queue
            refusal = Refused("wrong_queue", f"{shown!r} jobs go to queue {right!r}, not {message.queue_name!r}.")
        else:
            refusal = Refused("unknown_type", f"No job type is named {shown!r}.")
        queue = message.queue_name if message.queue_name in self.registry.queues else "other"
        kwargs = message.kwargs if isinstance(message.kwargs, dict) else {}
        try:
            self.adopter.refuse(
                queue, kwargs.get("job_id"), message, refusal, tenant=Adopter.tenant_of(message), job_type=shown
            )
        except Exception:  # a hook that raised would stop this worker's consumer
            logger.exception("Could not record why message %r is dead-lettered.", message.message_id)
