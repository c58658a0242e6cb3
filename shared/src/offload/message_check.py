"""``offload check-message``: would a worker run this wire message? The adoption checks, on a file.

A publisher written in another language checks its messages against the contract before (or
instead of) publishing them: the message's shape (``docs/wire-format.md``), its AMQP properties
(``user_id``, ``priority``, ``headers``), then exactly what a worker checks at adoption
(:class:`offload.wire_checks.WireChecks`: the publisher's grant from ``OFFLOAD_WIRE_PUBLISHERS``,
tenant, job type, size, the payload's JSON Schema and model, the options) against the job-type
catalogue in Redis (or the built-in contracts when Redis is out of reach). What only a live
system knows (quotas, whether the job id or idempotency key was used) is not checked.

Each problem is one line: the field's path in the message (or property), and what is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from offload.contracts import Registry
from offload.errors import Refused, ValidationFailed
from offload.wire import offload_options
from offload.wire_access import WireAccess, WireGrant
from offload.wire_checks import WireChecks, invalid_message, unserved

#: The AMQP properties the check reads from the ``--headers`` file.
PROPERTIES = ("user_id", "priority", "headers")
#: The top-level fields of a message and the JSON type each must have.
_FIELDS: dict[str, tuple[type, ...]] = {
    "queue_name": (str,),
    "actor_name": (str,),
    "args": (list,),
    "kwargs": (dict,),
    "options": (dict,),
    "message_id": (str,),
    "message_timestamp": (int,),
}


@dataclass(frozen=True)
class MessageCheck:
    """Checks a message and its properties as a worker would (see the module's docstring)."""

    registry: Registry
    checks: WireChecks

    def problems(self, body: bytes, properties: Any = None) -> list[str]:
        """Every problem found, as ``"<field>: <problem>"`` lines; empty when a worker would run it."""
        try:
            message = json.loads(body)
        except ValueError as exc:
            return [f"(body): not JSON: {exc}"]
        found = _properties(properties)
        if not isinstance(message, dict):
            return [*found, "(body): must be a JSON object (a Dramatiq message)"]
        found += _shape(message)
        if found and any(not line.startswith(PROPERTIES) for line in found):
            return found  # the message itself is malformed: nothing further is meaningful
        refused = unserved(self.registry, message["actor_name"], message["queue_name"])
        if refused is not None:
            field = "actor_name" if refused.code == "unknown_type" else "queue_name"
            return [*found, f"{field}: {refused.code}: {refused.message}"]
        kwargs = message["kwargs"]
        if message["args"] or set(kwargs) != {"job_id", "payload"}:
            return [*found, f"kwargs: {invalid_message().message}"]
        user = properties.get("user_id") if isinstance(properties, dict) else None
        checks = self.checks
        if self.checks.access.grant(user) is None:
            found.append(_unmapped(user, self.checks.access))
            asked = offload_options(message["options"]).get("tenant")
            stand_in = WireGrant((asked if isinstance(asked, str) else "default",))
            checks = WireChecks(checks.preparer, WireAccess(frozenset(), {"": stand_in}), checks.max_message_bytes)
            user = ""  # the other checks still run, as for a publisher allowed this tenant
        contract = self.registry.get(message["actor_name"])
        try:
            checks.check(
                contract,
                kwargs["job_id"],
                kwargs["payload"],
                message["options"],
                publisher=user,
                message_id=message["message_id"],
                size=len(body),
            )
        except Refused as refusal:
            found += _refusal_lines(refusal)
            if refusal.errors and not any(e["field"].startswith("payload") for e in refusal.errors):
                try:  # the options were wrong first: say what else is, so one run shows every difference
                    contract.parse(kwargs["payload"] if isinstance(kwargs["payload"], dict) else {})
                except ValidationFailed as exc:
                    found += _refusal_lines(Refused(exc.code, exc.message, exc.errors))
        return found


def _properties(properties: Any) -> list[str]:
    if properties is None:
        return []
    if not isinstance(properties, dict):
        return ["(properties): must be a JSON object with user_id, priority and headers"]
    found = [f"{name}: not an AMQP property this check reads" for name in sorted(set(properties) - set(PROPERTIES))]
    user, priority, headers = (properties.get(name) for name in PROPERTIES)
    if user is not None and not isinstance(user, str):
        found.append("user_id: must be a string (the publishing connection's login)")
    if priority is not None and (isinstance(priority, bool) or priority not in (1, 2, 3)):
        found.append("priority: must be 1 (low), 2 (normal) or 3 (high), or left out")
    if headers is not None and not isinstance(headers, dict):
        found.append("headers: must be a table (a JSON object)")
    return found


def _shape(message: dict[str, Any]) -> list[str]:
    found = []
    for name, kinds in _FIELDS.items():
        value = message.get(name)
        if name not in message:
            found.append(f"{name}: missing")
        elif not isinstance(value, kinds) or isinstance(value, bool):
            found.append(f"{name}: must be a JSON {'integer' if kinds == (int,) else kinds[0].__name__}")
    for name in sorted(set(message) - set(_FIELDS)):
        found.append(f"{name}: not a field of a message")
    return found


def _unmapped(user: Any, access: WireAccess) -> str:
    if user is None:
        return "user_id: missing: the message would be refused (unauthenticated_publisher); set it to your login"
    if access.is_trusted(user):
        return (
            f"user_id: {user!r} is Offload's own user; its messages run recorded jobs only "
            "(unauthenticated_publisher for one without a record)"
        )
    return f"user_id: {user!r} is not mapped in OFFLOAD_WIRE_PUBLISHERS (unauthenticated_publisher)"


def _refusal_lines(refusal: Refused) -> list[str]:
    if not refusal.errors:
        return [f"({refusal.code}): {refusal.message}"]
    return [
        f"{in_message(item['field'])}: {item['problem']} ({refusal.code}, {item['rule']})" for item in refusal.errors
    ]


def in_message(field: str) -> str:
    """Where a submission's field is in a wire message.

    ``payload`` is ``kwargs.payload``; an option is ``options.offload.<name>`` (``options.broker_priority``
    and ``options.offload.*`` are already there).
    """
    if field == "payload" or field.startswith(("payload.", "payload[")):
        return "kwargs." + field
    if field.startswith("options.") and not field.startswith(("options.offload.", "options.broker_priority")):
        return "options.offload." + field.removeprefix("options.")
    return field
