"""The checks a message published on the wire passes before it becomes a job: one code for the worker and the CLI.

A worker adopting a message (``offload.worker.adoption``) and ``offload check-message`` both run
:class:`WireChecks`: who published it (the broker user, :mod:`offload.wire_access`), the tenant
and job type that user may use, the message's shape, its size, and then the same
:meth:`offload.submission.Preparer.prepare` an HTTP submission goes through, on the submission
the message's ``options.offload`` block amounts to (``priority``, ``delay``, ``max_retries``,
``callback_url``, ``then``, ``tags``, ``metadata``), plus the ``Idempotency-Key`` rule for
``idempotency_key``. What only Redis knows (quotas, an existing job id, an idempotency key's
earlier job) is the adopter's part.

Field problems name the submission's fields, as a 422 names them (``options.delay`` is the
message's ``options.offload.delay``; ``payload`` its ``kwargs.payload``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from offload import problems
from offload.contracts import JobContract, Priority, Registry
from offload.errors import ClientError, Refused, ValidationFailed
from offload.submission import PreparedJob, Preparer, idempotency_key_rule, is_job_id
from offload.wire import WIRE_VERSION, offload_options
from offload.wire_access import TENANT, WireAccess, WireGrant

#: ``options.offload`` keys that are the HTTP submission's ``options``, checked by the same code.
SUBMISSION_OPTIONS = ("priority", "delay", "max_retries", "callback_url", "then", "tags", "metadata")
#: Trace context keys our own publisher writes (free-form strings, not interpreted by these checks).
TRACE_OPTIONS = ("traceparent", "tracestate")
#: Every key ``options.offload`` may hold.
OFFLOAD_KEYS = frozenset({"v", "tenant", "idempotency_key", *SUBMISSION_OPTIONS, *TRACE_OPTIONS})
#: The longest trace context value kept.
MAX_TRACE_VALUE = 512


@dataclass(frozen=True)
class WireJob:
    """A message that passed the checks: the job it asks for and its idempotency key."""

    prepared: PreparedJob
    idempotency_key: str | None


def unserved(registry: Registry, actor_name: Any, queue_name: Any) -> Refused | None:
    """Why no worker reading ``queue_name`` can run a message for ``actor_name`` (None if one can)."""
    shown = str(actor_name)[:100]
    if not isinstance(actor_name, str) or actor_name not in registry.names:
        return Refused("unknown_type", f"No job type is named {shown!r}.")
    right = registry.get(actor_name).queue
    if right != queue_name:
        return Refused("wrong_queue", f"{shown!r} jobs go to queue {right!r}, not {str(queue_name)[:100]!r}.")
    return None


def invalid_message() -> Refused:
    """The refusal of a message whose ``args``/``kwargs`` are not a job's."""
    return Refused("invalid_message", "A job's message has the kwargs job_id and payload only.")


@dataclass(frozen=True)
class WireChecks:
    """What a message from a publishing service must pass, as HTTP's checks (see the module's docstring).

    Args:
        preparer: validates the submission the message amounts to.
        access: the trusted broker users and the publishers' grants.
        max_message_bytes: the largest message (``OFFLOAD_MAX_BODY_BYTES``, as for an HTTP body).
    """

    preparer: Preparer
    access: WireAccess
    max_message_bytes: int

    def owner(self, publisher: str | None, options: dict[str, Any]) -> str | None:
        """The tenant a refusal of this message is recorded under; None when none can be named.

        A trusted publisher's message names its tenant (Offload wrote it); a mapped publisher's is
        the tenant it asked for if that is one of its own, else its own first tenant; a message
        without a mapped ``user_id`` names none (its refusal is kept beside the dead letter).
        """
        asked = offload_options(options).get("tenant")
        if self.access.is_trusted(publisher):
            tenant = asked if asked is not None else "default"
            return tenant if isinstance(tenant, str) and TENANT.match(tenant) else None
        grant = self.access.grant(publisher)
        if grant is None:
            return None
        return asked if isinstance(asked, str) and asked in grant.tenants else grant.home

    def check(
        self,
        contract: JobContract,
        job_id: Any,
        payload: Any,
        options: dict[str, Any],
        *,
        publisher: str | None,
        message_id: Any,
        size: int,
    ) -> WireJob:
        """Check one message of ``publisher`` (not a trusted one) for job type ``contract``.

        Raises:
            Refused: the message may not run; its code, message and field problems say why.
        """
        grant = self.access.grant(publisher)
        if grant is None:
            who = "has no user_id property" if publisher is None else f"comes from broker user {publisher[:100]!r}"
            raise Refused(
                "unauthenticated_publisher",
                f"The message {who}, which OFFLOAD_WIRE_PUBLISHERS does not map to a tenant; set user_id to a "
                "mapped user's login.",
            )
        if not is_job_id(job_id) or job_id != message_id:
            raise Refused("invalid_job_id", "kwargs.job_id must be a UUID equal to the message's message_id.")
        block = offload_options(options)
        tenant = self._tenant(grant, block)
        if contract.internal:
            raise Refused(
                "internal_type", f"{contract.name!r} jobs are created by Offload itself; they cannot be published."
            )
        if not grant.allows_type(contract.name):
            raise Refused("job_type_not_allowed", f"Broker user {publisher!r} may not publish {contract.name!r} jobs.")
        if size > self.max_message_bytes:
            raise Refused("payload_too_large", f"The message is larger than {self.max_message_bytes} bytes.")
        _check_block(block)
        key = block.get("idempotency_key")
        level = _broker_priority(options)
        submission = {k: block[k] for k in SUBMISSION_OPTIONS if k in block}
        body = {"type": contract.name, "payload": payload, "options": submission}
        try:
            prepared = self.preparer.prepare(body, tenant=tenant, job_id=job_id)
        except ValidationFailed as exc:
            raise Refused(exc.code, exc.message, exc.errors) from None
        except ClientError as exc:
            raise Refused(exc.code, exc.message) from None
        if level is not None and "priority" not in submission:
            # the job's priority, outside the submission: the same body over HTTP is the same idempotent job
            prepared = replace(prepared, priority=level)
        return WireJob(prepared, key)

    @staticmethod
    def _tenant(grant: WireGrant, block: dict[str, Any]) -> str:
        tenant = block.get("tenant", grant.home)
        if not isinstance(tenant, str) or not TENANT.match(tenant):
            raise Refused("invalid_tenant", "options.offload.tenant must be 1-64 letters, digits, _ or -.")
        if tenant not in grant.tenants:
            raise Refused("tenant_not_allowed", f"This publisher may not act for tenant {tenant!r}.")
        return tenant


def _check_block(block: dict[str, Any]) -> None:
    """The keys of ``options.offload`` that :meth:`Preparer.prepare` does not check."""
    unknown = sorted(set(block) - OFFLOAD_KEYS)
    if unknown:
        raise _invalid(f"options.offload.{unknown[0]}"[:120], "extra_forbidden", "is not an options.offload key")
    if "v" in block and (block["v"] != WIRE_VERSION or isinstance(block["v"], bool)):
        raise _invalid("options.offload.v", "literal_error", f"must be {WIRE_VERSION}")
    for name in TRACE_OPTIONS:
        value = block.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TRACE_VALUE):
            raise _invalid(f"options.offload.{name}", "string_type", f"must be a string of at most {MAX_TRACE_VALUE}")
    key = block.get("idempotency_key")
    if key is not None:
        rule = idempotency_key_rule(key) if isinstance(key, str) else "string_type"
        if rule is not None:
            raise _invalid(
                "options.offload.idempotency_key", rule, "must be 1-255 printable ASCII characters, as Idempotency-Key"
            )


def _broker_priority(options: dict[str, Any]) -> Priority | None:
    """The priority ``options.broker_priority`` stands for (None if not given).

    Raises:
        Refused: it is not one of the levels 1-3.
    """
    levels = {p.broker_priority: p for p in Priority}
    asked = options.get("broker_priority")
    if asked is None:
        return None
    if not isinstance(asked, int) or isinstance(asked, bool) or asked not in levels:
        raise Refused(
            "validation_failed",
            "Invalid 'options.broker_priority'.",
            [problems.in_body("options.broker_priority", "literal_error", f"must be one of {sorted(levels)}")],
        )
    return levels[asked]


def _invalid(field: str, rule: str, problem: str) -> Refused:
    return Refused("validation_failed", f"Invalid {field!r}: {problem}.", [problems.in_body(field, rule, problem)])
