"""Contracts as the catalogue holds them: a JSON card per job type, and the contract read back from one.

A worker registers a card for each of its job types. A process that cannot import the type's
Python code (the API, for a team's own worker) rebuilds a :class:`RegisteredContract` from the
card and validates payloads with its JSON Schema; the worker validates again with its full model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
from pydantic import ConfigDict

from offload.contracts._base import Concurrency, JobContract, Payload, Priority, RetryPolicy, SubmissionPolicy
from offload.errors import ValidationFailed
from offload.problems import located

#: The largest card the catalogue accepts (its JSON, in bytes).
MAX_CARD_BYTES = 64 * 1024


class Document(Payload):
    """A payload known only by its JSON Schema: the fields as submitted, already checked against it."""

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)


def schema_hash(queue: str, payload: dict[str, Any], result: dict[str, Any] | None) -> str:
    """What identifies a contract's shape: its queue and the JSON Schemas of its payload and result.

    Two workers may register one name only with the same hash.
    """
    shape = {"queue": queue, "payload": payload, "result": result}
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"sha256:{digest[:16]}"


def card(contract: JobContract, *, service: str) -> dict[str, Any]:
    """The card a worker registers for ``contract``.

    It holds everything a process needs to route, limit and validate the type's jobs without
    importing its code.

    Raises:
        ValueError: the card is larger than :data:`MAX_CARD_BYTES`.
    """
    payload = contract.json_schema()
    result = contract.result.model_json_schema() if contract.result is not None else None
    found = {
        "name": contract.name,
        "queue": contract.queue,
        "service": service,
        "description": contract.description,
        "payload_schema": payload,
        "result_schema": result,
        "retry": {
            "max_retries": contract.retry.max_retries,
            "max_retries_limit": contract.retry.max_retries_limit,
            "min_backoff": contract.retry.min_backoff,
            "max_backoff": contract.retry.max_backoff,
        },
        "time_limit": contract.time_limit,
        "priority": contract.priority.value,
        "internal": contract.internal,
        "exhausted_state": contract.exhausted_state,
        "quota": contract.quota,
        "policy": {
            "quota_per_hour": contract.policy.quota_per_hour,
            "recipient_domains": list(contract.policy.recipient_domains),
        },
        "concurrency": (
            {"name": contract.concurrency.name, "limit": contract.concurrency.limit} if contract.concurrency else None
        ),
        "schema_hash": schema_hash(contract.queue, payload, result),
    }
    size = len(json.dumps(found, separators=(",", ":")))
    if size > MAX_CARD_BYTES:
        raise ValueError(
            f"The contract of {contract.name!r} is {size} bytes as JSON; the catalogue takes {MAX_CARD_BYTES}."
        )
    return found


def policy_of(found: dict[str, Any]) -> SubmissionPolicy:
    """The submission policy a card carries (none: no limits, as cards registered before policies).

    Raises:
        ValueError: the policy is malformed.
    """
    policy = found.get("policy") or {}
    domains = policy.get("recipient_domains", [])
    if not isinstance(domains, list) or not all(isinstance(d, str) and len(d) <= 253 for d in domains[:1000]):
        raise ValueError("the policy's recipient_domains is not a list of domain names")
    return SubmissionPolicy.of(quota_per_hour=int(policy.get("quota_per_hour", 0)), recipient_domains=domains[:1000])


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """The places (``payload_schema.properties.text``) where two cards differ, outermost first."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[str] = []
        for key in sorted(set(old) | set(new)):
            if key not in ("service", "schema_hash", "policy"):
                found += differences(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        return found
    return [] if old == new else [path or "(whole card)"]


def _tenant_key(tenant: str, _payload: Any) -> str:
    return tenant


@dataclass(frozen=True)
class RegisteredContract(JobContract):
    """A contract rebuilt from its card: payloads are checked against its JSON Schema.

    It routes, prioritises and limits jobs as the worker declared; only the checks of its
    Python model beyond the schema wait for the worker, which fails such a job as
    ``invalid_payload`` naming the field.
    """

    schema: dict[str, Any] = field(default_factory=dict, compare=False)
    schema_hash: str = ""
    service: str = ""
    validator: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_card(cls, found: dict[str, Any]) -> RegisteredContract:
        """The contract a card describes.

        Raises:
            ValueError: the card is malformed (a bad name, queue, schema or number).
        """
        try:
            retry = found["retry"]
            limit = found.get("concurrency")
            schema = found["payload_schema"]
            return cls(
                name=found["name"],
                queue=found["queue"],
                payload=Document,
                description=str(found.get("description", ""))[:500],
                retry=RetryPolicy(
                    max_retries=int(retry["max_retries"]),
                    max_retries_limit=int(retry["max_retries_limit"]),
                    min_backoff=float(retry["min_backoff"]),
                    max_backoff=float(retry["max_backoff"]),
                ),
                time_limit=float(found["time_limit"]),
                priority=Priority(found["priority"]),
                internal=bool(found["internal"]),
                exhausted_state="dead" if found["exhausted_state"] == "dead" else "failed",
                quota=found.get("quota"),
                concurrency=Concurrency(str(limit["name"]), int(limit["limit"]), _tenant_key) if limit else None,
                policy=policy_of(found),
                schema=schema,
                schema_hash=str(found["schema_hash"]),
                service=str(found.get("service", "")),
                validator=jsonschema_rs.validator_for(schema),
            )
        except (KeyError, TypeError, ValueError, jsonschema_rs.ValidationError) as exc:
            raise ValueError(f"A malformed catalogue card ({type(exc).__name__}: {exc}).") from None

    def parse(self, data: Any) -> Payload:
        """Check ``data`` against the card's JSON Schema.

        Raises:
            ValidationFailed: it does not match; each item names the field's place and the rule.
        """
        errors = [
            located(
                ("payload", *err.instance_path),
                str(err.schema_path[-1]) if err.schema_path else "schema",
                _message(err),
            )
            for err in self.validator.iter_errors(data)
        ]
        if errors:
            raise ValidationFailed(f"The payload does not match the contract of {self.name!r}.", errors=errors[:20])
        return Document.model_validate(data if isinstance(data, dict) else {})

    def json_schema(self) -> dict[str, Any]:
        """The payload's JSON Schema, as the worker registered it."""
        return self.schema


def _message(err: Any) -> str:
    """A validation message that never echoes the submitted value (it may be long, or secret)."""
    kind = type(err.kind).__name__.removeprefix("ValidationErrorKind_")
    return f"does not satisfy the schema's {kind or 'rule'} rule"
