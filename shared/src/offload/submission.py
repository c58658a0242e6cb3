"""What a client may ask for when it submits a job, validated the same way for HTTP and the SDK.

A submission is ``{"type": ..., "payload": {...}, "options": {...}}``. :func:`prepare` checks it
against the contract registry and returns a :class:`PreparedJob` that the publisher turns into a
job record and a Dramatiq message.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic import ValidationError as PydanticValidationError

from offload import problems
from offload.contracts import JobContract, Payload, Priority, Registry, pydantic_errors
from offload.contracts.email import LINK_SUFFIX
from offload.errors import ValidationFailed
from offload.tracing import TraceCarrier
from offload.urls import UrlPolicy, check_link

#: The most follow-up jobs one job may name.
MAX_FOLLOW_UPS = 10
#: The most tags one job may carry, and what one tag may be (it is part of a Redis key and a URL).
MAX_TAGS = 10
TAG_PATTERN = r"^[A-Za-z0-9_.:/-]{1,64}$"
#: The most metadata entries one job may carry, and the longest key and value.
MAX_METADATA = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 256

Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=TAG_PATTERN)]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_METADATA_KEY)]
MetadataValue = Annotated[str, StringConstraints(max_length=MAX_METADATA_VALUE)]


M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class FollowUpOptions(_Strict):
    """Options of a follow-up job (no delay: it starts when its parent succeeds)."""

    priority: Literal["high", "normal", "low"] | None = None
    max_retries: int | None = Field(default=None, ge=0)
    callback_url: str | None = Field(default=None, max_length=2048)


class FollowUp(_Strict):
    """A job to run when its parent succeeds. Its handler can read the parent's result."""

    type: str = Field(max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict)
    options: FollowUpOptions = Field(default_factory=FollowUpOptions)


class JobOptions(_Strict):
    """Options accepted with every job, over HTTP and from the SDK."""

    priority: Literal["high", "normal", "low"] | None = Field(
        default=None, description="Queue priority; defaults to the job type's."
    )
    delay: float | None = Field(default=None, ge=0, description="Seconds to wait before the job may start.")
    max_retries: int | None = Field(default=None, ge=0, description="Retries after a failed attempt.")
    callback_url: str | None = Field(
        default=None, max_length=2048, description="Signed webhook target called when the job ends."
    )
    then: list[FollowUp] = Field(
        default_factory=list, max_length=MAX_FOLLOW_UPS, description="Jobs to run when this one succeeds."
    )
    tags: list[Tag] = Field(
        default_factory=list,
        max_length=MAX_TAGS,
        description=(
            "Labels to find and follow the job by (GET /v1/jobs?tag=, GET /v1/events?tag=): up to 10, each 1-64 "
            "characters of letters, digits and _.:/-."
        ),
    )
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict,
        max_length=MAX_METADATA,
        description="Your own strings kept with the job and shown with it: up to 16 keys of 1-64 characters, "
        "values of at most 256.",
    )


class JobRequest(_Strict):
    """The body of ``POST /v1/jobs``."""

    type: Any = Field(description="The job type, e.g. 'system.sleep' (see GET /v1/job-types).")
    payload: dict[str, Any] = Field(default_factory=dict)
    options: JobOptions = Field(default_factory=JobOptions)
    token: bool = Field(
        default=False,
        description="HTTP only: answer with a short-lived read-only browser token for this job "
        "(`token`, `token_expires_at`), usable as `?token=` on its status and events URLs.",
    )


@dataclass(frozen=True)
class PreparedJob:
    """A validated submission, ready to be recorded and published.

    ``fingerprint`` is a hash of the normalised request, used to tell an ``Idempotency-Key`` reused
    with the same body from one reused with another.
    """

    job_id: str
    contract: JobContract
    payload: Payload
    tenant: str
    priority: Priority
    max_retries: int
    delay: float | None
    callback_url: str | None
    follow_ups: tuple[FollowUp, ...]
    fingerprint: str
    parent_id: str | None = None
    batch_id: str | None = None
    tags: tuple[str, ...] = ()
    metadata: dict[str, str] | None = None
    #: The trace this job continues (a webhook delivery continues its job's); None: the current span's.
    trace: TraceCarrier | None = None


def new_job_id() -> str:
    """A fresh job id: a random UUIDv4 (122 random bits, so ids cannot be guessed or enumerated)."""
    return str(uuid.uuid4())


def is_job_id(value: Any) -> bool:
    """True if ``value`` is a job id as Offload writes them: a UUID in its canonical form."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


#: The longest idempotency key (``Idempotency-Key`` over HTTP, ``options.offload.idempotency_key`` on the wire).
MAX_IDEMPOTENCY_KEY = 255


def idempotency_key_rule(key: str) -> str | None:
    """The rule an idempotency key breaks (None if it is fine): 1-255 printable ASCII characters."""
    if not key:
        return "string_too_short"
    if len(key) > MAX_IDEMPOTENCY_KEY:
        return "string_too_long"
    if not key.isascii() or not key.isprintable():
        return "string_pattern_mismatch"
    return None


def follow_up_id(parent_id: str, index: int) -> str:
    """The id of a parent's ``index``-th follow-up: deterministic, so a redelivered parent creates it once."""
    return str(uuid.uuid5(uuid.UUID(parent_id), f"then/{index}"))


@dataclass(frozen=True)
class Preparer:
    """Validates submissions against a registry and a URL policy, within the configured limits."""

    registry: Registry
    url_policy: UrlPolicy
    max_delay: float
    #: Whether links shown to people (an email's ``*_url`` variables) may be plain ``http``.
    http_links: bool = False

    def prepare(
        self,
        body: Any,
        *,
        tenant: str,
        job_id: str | None = None,
        batch_id: str | None = None,
        internal: bool = False,
    ) -> PreparedJob:
        """Validate a raw submission (a decoded JSON object) into a :class:`PreparedJob`.

        ``internal`` allows job types clients may not submit (Offload's own, like webhook deliveries).

        Raises:
            ValidationFailed: a field is wrong; ``errors`` names each field path.
            UnknownJobType: the type is not in the registry (or is internal).
        """
        request = parse_object(JobRequest, body)
        contract = self.registry.get(request.type, internal=internal)
        payload = contract.parse(request.payload)
        self._check_fetched_urls(payload, "payload")
        self._check_links(payload, "payload")
        self._check_recipients(contract, payload, "payload")
        options = request.options
        max_retries = self._max_retries(contract, options.max_retries, "options.max_retries")
        if options.delay is not None and options.delay > self.max_delay:
            raise _invalid("options.delay", "less_than_equal", f"must be at most {self.max_delay:g} seconds")
        callback = self._callback(options.callback_url, "options.callback_url")
        for index, follow_up in enumerate(options.then):
            self._check_follow_up(follow_up, f"options.then[{index}]")
        return PreparedJob(
            job_id=job_id or new_job_id(),
            contract=contract,
            payload=payload,
            tenant=tenant,
            priority=Priority(options.priority) if options.priority else contract.priority,
            max_retries=max_retries,
            delay=options.delay or None,
            callback_url=callback,
            follow_ups=tuple(options.then),
            fingerprint=fingerprint(request.model_dump(mode="json", exclude={"token"})),
            batch_id=batch_id,
            tags=tuple(dict.fromkeys(options.tags)),
            metadata=dict(options.metadata) or None,
        )

    def prepare_follow_up(self, follow_up: FollowUp, *, parent_id: str, index: int, tenant: str) -> PreparedJob:
        """Turn a parent's ``index``-th follow-up into a job, with its deterministic id."""
        body = {"type": follow_up.type, "payload": follow_up.payload, "options": follow_up.options.model_dump()}
        prepared = self.prepare(body, tenant=tenant, job_id=follow_up_id(parent_id, index))
        return PreparedJob(**{**prepared.__dict__, "parent_id": parent_id})

    def _check_follow_up(self, follow_up: FollowUp, path: str) -> None:
        try:
            contract = self.registry.get(follow_up.type, internal=False)
            payload = contract.parse(follow_up.payload)
            self._check_fetched_urls(payload, "payload")
            self._check_links(payload, "payload")
        except ValidationFailed as exc:
            raise ValidationFailed(exc.message, errors=problems.nested(exc.errors, path)) from None
        self._max_retries(contract, follow_up.options.max_retries, f"{path}.options.max_retries")
        self._callback(follow_up.options.callback_url, f"{path}.options.callback_url")

    @staticmethod
    def _max_retries(contract: JobContract, asked: int | None, path: str) -> int:
        if asked is None:
            return contract.retry.max_retries
        if asked > contract.retry.max_retries_limit:
            raise _invalid(
                path, "less_than_equal", f"must be at most {contract.retry.max_retries_limit} for {contract.name!r}"
            )
        return asked

    def _callback(self, url: str | None, path: str) -> str | None:
        return None if url is None else self.url_policy.check(url, field_name=path)

    def _check_fetched_urls(self, payload: Payload, path: str) -> None:
        """Vet every URL in ``payload`` that a worker will fetch (report rows, image sources), as callbacks are.

        The worker checks each again when it connects (``offload.outbound``); checking here too
        turns a URL that can never be fetched into a 422 naming it, instead of a failed job
        (reliability-security.md §7.7: "checked at registration and again at connect time").

        Raises:
            ValidationFailed: ``url_not_allowed`` or ``scheme_not_allowed``, naming the field.
        """
        for field_path, url in fetched_urls(payload, path):
            self.url_policy.check(url, field_name=field_path)

    def _check_links(self, payload: Payload, path: str) -> None:
        """Refuse a link in an email that is not an absolute ``https`` URL (or ``http``, if allowed).

        Raises:
            ValidationFailed: ``scheme_not_allowed`` or ``url_not_allowed``, naming the variable.
        """
        for field_path, url in link_values(payload, path):
            check_link(url, allow_http=self.http_links, field_name=field_path)

    def _check_recipients(self, contract: JobContract, payload: Payload, path: str) -> None:
        """Refuse a recipient at a domain off the type's policy (reliability-security.md §7.1 row 23).

        The policy is the one the serving worker registered (``OFFLOAD_EMAIL_ALLOWED_DOMAINS`` of the
        email worker), so the API refuses what the worker would.

        Raises:
            ValidationFailed: ``recipient_not_allowed``, naming every refused field.
        """
        policy = contract.policy
        if not policy.recipient_domains:
            return
        refused = [
            problems.in_body(
                field_path, "domain_not_allowed", f"the domain {address.rpartition('@')[2]!r} may not be sent to"
            )
            for field_path, address in recipient_addresses(payload, path)
            if not policy.allows_recipient(address)
        ]
        if refused:
            raise ValidationFailed(
                f"{len(refused)} recipient(s) are not on this deployment's domain allow-list.",
                code="recipient_not_allowed",
                errors=refused,
            )


def recipient_addresses(payload: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(field path, address)`` for each address a payload sends to.

    Payload models name their recipient lists in a ``sent_to`` class attribute (``to`` and ``cc``
    of ``email.send``; ``recipients`` of ``email.batch``); a reply-to address is not sent to.
    """
    for name in getattr(type(payload), "sent_to", ()):
        for index, recipient in enumerate(getattr(payload, name)):
            yield f"{path}.{name}[{index}].email", recipient.email


def fetched_urls(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(field path, URL)`` for each URL in a validated payload that a worker will fetch.

    Models name their URL fields in a ``fetched_urls`` class attribute (e.g. an image source's
    ``url``); nested models and lists of them are searched too. Other values (row dicts, text)
    are not looked into.
    """
    if isinstance(value, BaseModel):
        fetched = getattr(type(value), "fetched_urls", ())
        for name in type(value).model_fields:
            item = getattr(value, name)
            if name in fetched and isinstance(item, str):
                yield f"{path}.{name}", item
            elif isinstance(item, BaseModel | list):
                yield from fetched_urls(item, f"{path}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, BaseModel):
                yield from fetched_urls(item, f"{path}[{index}]")


def link_values(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """``(field path, value)`` for each link a validated payload shows to people.

    Models name their template-variable maps in a ``linked_vars`` class attribute; each variable in
    them whose name ends in :data:`~offload.contracts.email.LINK_SUFFIX` is a link, whatever its
    type. Nested models and lists of them are searched too.
    """
    if isinstance(value, BaseModel):
        linked = getattr(type(value), "linked_vars", ())
        for name in type(value).model_fields:
            item = getattr(value, name)
            if name in linked and isinstance(item, dict):
                yield from ((f"{path}.{name}.{k}", v) for k, v in item.items() if k.endswith(LINK_SUFFIX))
            elif isinstance(item, BaseModel | list):
                yield from link_values(item, f"{path}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, BaseModel):
                yield from link_values(item, f"{path}[{index}]")


def fingerprint(document: Any) -> str:
    """A stable SHA-256 of a JSON document (keys sorted), for idempotency comparisons."""
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


def parse_object(model: type[M], body: Any, *, what: str = "job submission") -> M:
    """A request body (a decoded JSON document) as ``model``, or a 422 naming each field that is wrong.

    Raises:
        ValidationFailed: ``body`` is not an object, or does not match ``model`` (``what`` names it).
    """
    if not isinstance(body, dict):
        raise _invalid("body", "dict_type", "must be a JSON object")
    try:
        return model.model_validate(body)
    except PydanticValidationError as exc:
        raise ValidationFailed(
            f"The request does not match the {what} schema.", errors=pydantic_errors(exc, body)
        ) from None


def _invalid(path: str, rule: str, problem: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid {path!r}: {problem}.", errors=[problems.in_body(path, rule, problem)])
