"""The shape of a job contract: what a job type is called, where it goes and what it accepts."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic import ValidationError as PydanticValidationError

from offload.errors import ValidationFailed
from offload.problems import Location, located, value_location

#: Dramatiq's rule for queue names (``dramatiq/actor.py``); job type names follow ``domain.verb``.
QUEUE_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9._-]*$")
JOB_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


#: Validation error types that become the response's ``error`` code instead of ``validation_failed``
#: (reliability-security.md §7.3 names them).
SPECIFIC_CODES = frozenset({"invalid_header_value", "invalid_address", "push_message_too_large"})


class Payload(BaseModel):
    """Base of every payload model: strict types, unknown fields refused, bounded strings.

    Strict mode means ``"100"`` is not an int and ``true`` is not a number; ``extra="forbid"``
    turns a misspelt or smuggled field into a 422 that names it.
    """

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        str_max_length=10_000,
        allow_inf_nan=False,
    )


class Priority(StrEnum):
    """Client-facing priorities. RabbitMQ serves higher numbers first (``x-max-priority``)."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def broker_priority(self) -> int:
        """The AMQP priority for this level; messages with no priority count as 0, below ``low``."""
        return {"high": 3, "normal": 2, "low": 1}[self.value]


#: The ``x-max-priority`` every Offload queue is declared with. Changing it breaks redeclaration
#: of existing queues (dramatiq#301), so it is fixed here and documented in the wire format.
MAX_BROKER_PRIORITY = 3


@dataclass(frozen=True)
class RetryPolicy:
    """How a failed attempt is retried. Durations are seconds.

    Backoff doubles from ``min_backoff`` up to ``max_backoff``, with jitter. Retries wait in Redis,
    not in RabbitMQ, so a long backoff never holds a delivery past ``consumer_timeout``.
    """

    #: Retries after the first attempt unless the client asks for fewer or more.
    max_retries: int = 3
    #: The most retries a client may ask for with the ``max_retries`` option.
    max_retries_limit: int = 10
    min_backoff: float = 1.0
    max_backoff: float = 300.0


@dataclass(frozen=True)
class Concurrency:
    """At most ``limit`` jobs of a contract with the same key run at once; the others wait their turn.

    Args:
        name: the limit's name, e.g. ``report.build:tenant`` (``OFFLOAD_CONCURRENCY_LIMITS`` uses it).
        limit: how many may run at once unless the setting says otherwise.
        key: one job's key, from its tenant and its payload as submitted (e.g. the tenant itself).
    """

    name: str
    limit: int
    key: Callable[[str, Any], str] = field(compare=False)


@dataclass(frozen=True)
class SubmissionPolicy:
    """What a deployment lets a tenant submit of one job type, beyond the shape of its payload.

    A contract declares a default; the worker that serves the type registers the policy its own
    settings give (``EmailSettings`` reads ``OFFLOAD_EMAIL_QUOTA_PER_HOUR`` and
    ``OFFLOAD_EMAIL_ALLOWED_DOMAINS``) with the type's card, and every entrance (the API, the SDK,
    workers' follow-ups, wire-published messages) applies the registered one. So a domain's knobs
    live with its worker, and no other process needs to be told them.
    """

    #: Units of the contract's ``quota`` a tenant may submit per hour (0: no limit).
    quota_per_hour: int = 0
    #: Domains the payload's recipients (the fields its model names in ``sent_to``) may be at:
    #: ``example.com`` exactly, ``*.example.com`` any subdomain; empty: any.
    recipient_domains: tuple[str, ...] = ()

    @classmethod
    def of(cls, *, quota_per_hour: int = 0, recipient_domains: Iterable[str] = ()) -> SubmissionPolicy:
        """A policy from settings: domain names lower-cased, a trailing dot and blanks dropped."""
        domains = tuple(d.strip().lower().rstrip(".") for d in recipient_domains if d.strip())
        return cls(quota_per_hour=max(0, int(quota_per_hour)), recipient_domains=domains)

    def allows_recipient(self, address: str) -> bool:
        """Whether ``address`` (already validated and normalised) is at an allowed domain."""
        if not self.recipient_domains:
            return True
        domain = address.rpartition("@")[2].lower().rstrip(".")
        return any(
            domain.endswith(allowed[1:]) if allowed.startswith("*.") else domain == allowed
            for allowed in self.recipient_domains
        )


@dataclass(frozen=True)
class JobContract:
    """One job type, as data. The API, the publisher, the workers and the documents derive from it.

    Args:
        name: the public type name, ``domain.verb`` (also the Dramatiq actor name).
        queue: the RabbitMQ queue the worker for this domain consumes.
        payload: the pydantic model of the payload.
        description: one sentence for the job-type list and the OpenAPI document.
        result: optional model describing the result, for documentation.
        retry: the retry policy.
        time_limit: seconds an attempt may run before it is interrupted.
        priority: the default priority.
        internal: created by Offload itself (e.g. webhook deliveries); clients cannot submit it.
        exhausted_state: the state a job ends in when its retries run out (``failed`` or ``dead``).
        quota: the tenant quota this job type counts against (``email``), if any.
        policy: the default submission policy (the quota's size, recipient domains); the serving
            worker registers the one its settings give.
        units: how many units of the quota a payload costs (default 1).
        concurrency: at most this many jobs with the same key run at once (see :class:`Concurrency`).
    """

    name: str
    queue: str
    payload: type[Payload]
    description: str
    result: type[BaseModel] | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    time_limit: float = 300.0
    priority: Priority = Priority.NORMAL
    internal: bool = False
    exhausted_state: Literal["failed", "dead"] = "failed"
    quota: str | None = None
    units: Callable[[Any], int] = field(default=lambda _payload: 1, compare=False)
    concurrency: Concurrency | None = None
    policy: SubmissionPolicy = SubmissionPolicy()

    def __post_init__(self) -> None:
        if not JOB_TYPE_NAME.match(self.name):
            raise ValueError(f"Job type {self.name!r} is not 'domain.verb' in lower case.")
        if not QUEUE_NAME.match(self.queue):
            raise ValueError(f"Queue {self.queue!r} of {self.name!r} is not a valid queue name.")
        if self.time_limit <= 0 or self.retry.max_retries > self.retry.max_retries_limit:
            raise ValueError(f"Contract {self.name!r} has a non-positive time limit or too many retries.")

    def parse(self, data: Any) -> Payload:
        """Validate ``data`` against the payload model.

        Raises:
            ValidationFailed: the payload does not match; ``errors`` names each field under ``payload``.
        """
        try:
            return self.payload.model_validate(data)
        except PydanticValidationError as exc:
            special = [e["type"] for e in exc.errors() if e["type"] in SPECIFIC_CODES]
            raise ValidationFailed(
                f"The payload does not match the contract of {self.name!r}.",
                errors=pydantic_errors(exc, data, prefix=("payload",)),
                code=special[0] if special else ValidationFailed.code,
            ) from None

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema (2020-12) of this contract's payload."""
        schema = self.payload.model_json_schema()
        schema.setdefault("title", self.payload.__name__)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://offload.dev/schemas/{self.name}.json"
        return schema


def pydantic_errors(exc: PydanticValidationError, document: Any, prefix: Location = ()) -> list[dict[str, Any]]:
    """Pydantic's errors about ``document`` as :mod:`offload.problems` items, never echoing the input.

    Each names the place in ``document`` (which sits at ``prefix`` of the submission) and, as its
    rule, pydantic's error type.
    """
    return [
        located(
            (*prefix, *value_location(err["loc"], document, missing=err["type"] == "missing")), err["type"], err["msg"]
        )
        for err in exc.errors(include_url=False, include_input=False)
    ]
