"""Errors raised by Offload, one taxonomy for every process.

* OffloadError              base of everything below
  x ConfigError             settings missing or invalid; the process refuses to start
  x ClientError             the caller asked for something wrong (HTTP 4xx, see ``status``)
  | + ValidationFailed      a payload or option does not match its contract (422)
  | + UnknownJobType        no contract has that name (422)
  | + NotFound              no such job or batch for this caller (404, same for other tenants)
  | + Conflict              e.g. an ``Idempotency-Key`` reused with another body (409)
  | + InvalidState          the job is not in a state that allows the action (409)
  | + RetryLater            a refusal that ends by itself (429 + Retry-After): QuotaExceeded, TooManyBadKeys
  | + FileTooLarge, PayloadTooLarge   an upload or a body over its limit (413)
  | + LinkExpired, InvalidSignature   a signed download link out of time, or not ours (410, 403)
  | + WebhookVerificationError        a webhook delivery that must not be trusted (400)
  | + Unauthorized, Forbidden, TooManyBadKeys, CsrfFailed   the API's access rules (401, 403, 429)
  | + UnsupportedMediaType, InvalidJson, UnsupportedFormat, BadPath   what a request carried (415, 400, 422)
  | + Refused               a job published on the wire that may not run (its code is HTTP's)
  x DependencyError         a server we need is down, hung or refusing (HTTP 503 + Retry-After)
  | + BrokerUnavailable     RabbitMQ refused, timed out or did not confirm the message
  | + StatusStoreUnavailable Redis is unreachable
  | + StorageUnavailable    the object store (S3) is unreachable, timed out or refused
  | + ServiceBusy           this process is at a configured limit (e.g. open event streams)
  x JobError                raised by a job handler
    + PermanentJobError     retrying cannot help; the job fails at once
    + TransientJobError     worth retrying with backoff
    + JobCancelled          the job saw a cancel request and stopped
  x JobFailed               the runtime's signal to Dramatiq that a message is to be dead-lettered

Every error carries a stable ``code`` (snake_case, part of the API) and a one-sentence message
that is safe to show a client: no URL with credentials, no secret, no stack trace.
"""

from __future__ import annotations

from typing import Any, ClassVar


class OffloadError(Exception):
    """Base class of every error Offload raises on purpose."""

    #: Stable machine-readable code, part of the public API.
    code: ClassVar[str] = "offload_error"

    def __init__(self, message: str, *, code: str | None = None, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]
        #: Data needed to act on the error (job id, field path, ...); safe to show a client.
        self.context = context

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ConfigError(OffloadError):
    """Settings are missing or invalid; the message names the environment variable."""

    code = "config_error"


class ClientError(OffloadError):
    """The caller asked for something that cannot be done; maps to an HTTP 4xx."""

    code = "bad_request"
    status: ClassVar[int] = 400


class ValidationFailed(ClientError):
    """A payload or option does not match its contract.

    ``errors`` lists each field's problem: its path, JSON Pointer, rule and what is wrong, as
    :mod:`offload.problems` builds them.
    """

    code = "validation_failed"
    status = 422

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.errors = errors or []


class UnknownJobType(ClientError):
    """No contract is registered under the requested job type."""

    code = "unknown_job_type"
    status = 422


class NotFound(ClientError):
    """No such job or batch visible to this caller (another tenant's job is not found either)."""

    code = "not_found"
    status = 404


class PushNotConfigured(NotFound):
    """No push worker has registered a VAPID public key: web push is not set up (yet) on this deployment."""

    code = "push_not_configured"


class Conflict(ClientError):
    """The request conflicts with earlier state, such as an idempotency key reused with another body."""

    code = "conflict"
    status = 409


class InvalidState(ClientError):
    """The job's current state does not allow the action (cancel a finished job, retry a running one)."""

    code = "invalid_state"
    status = 409


class RetryLater(ClientError):
    """A refusal that ends by itself: ``retry_after`` says in how many seconds (HTTP 429 + Retry-After)."""

    status = 429

    def __init__(self, message: str, *, retry_after: int, **context: Any) -> None:
        super().__init__(message, **context)
        self.retry_after = retry_after


class QuotaExceeded(RetryLater):
    """The tenant has used its quota for this window; ``retry_after`` says when it renews."""

    code = "quota_exceeded"


class FileTooLarge(ClientError):
    """The file is over the size limit."""

    code = "payload_too_large"
    status = 413


class LinkExpired(ClientError):
    """The link's time is up (HTTP 410)."""

    code = "link_expired"
    status = 410


class InvalidSignature(ClientError):
    """The link was changed or not made by us (HTTP 403)."""

    code = "invalid_signature"
    status = 403


class WebhookVerificationError(ClientError):
    """A delivery that must not be trusted. ``code`` says why."""

    code = "invalid_signature"
    status = 400


class CsrfFailed(ClientError):
    """A state-changing form came without this session's token."""

    code = "csrf_failed"
    status = 403


class Unauthorized(ClientError):
    """No key, or a key that is not valid (the response never says which)."""

    code = "unauthorized"
    status = 401


class TooManyBadKeys(RetryLater):
    """This client address sent too many invalid keys in the current minute."""

    code = "too_many_attempts"


class Forbidden(ClientError):
    """The key is valid but its role may not do this."""

    code = "forbidden"
    status = 403


class UnsupportedFormat(ClientError):
    """The upload is not one of the accepted formats (judged from its bytes)."""

    code = "unsupported_format"
    status = 422


class BadPath(ClientError):
    """A download path that is not a storage key."""

    code = "bad_path"
    status = 400


class UnsupportedMediaType(ClientError):
    """The body is not ``application/json``."""

    code = "unsupported_media_type"
    status = 415


class InvalidJson(ClientError):
    """The body is not valid JSON (or uses NaN/Infinity, or nests too deeply)."""

    code = "invalid_json"
    status = 400


class PayloadTooLarge(ClientError):
    """The body is over ``OFFLOAD_MAX_BODY_BYTES``."""

    code = "payload_too_large"
    status = 413


class Refused(ClientError):
    """A job published on the wire that may not run: the code, message and field problems HTTP would answer."""

    code = "refused"

    def __init__(self, code: str, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, code=code)
        self.errors = errors or []

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class DependencyError(OffloadError):
    """A server Offload needs is unavailable. Clients should retry after ``retry_after`` seconds."""

    code = "dependency_unavailable"
    retry_after: ClassVar[int] = 2


class BrokerUnavailable(DependencyError):
    """RabbitMQ refused the connection, timed out, blocked us (alarm) or did not confirm the message."""

    code = "broker_unavailable"


class StatusStoreUnavailable(DependencyError):
    """Redis, which holds job state, is unreachable or timed out."""

    code = "status_store_unavailable"


class StorageUnavailable(DependencyError):
    """The object store holding uploads and outputs (S3) is unreachable, timed out or refused us."""

    code = "storage_unavailable"


class ServiceBusy(DependencyError):
    """This process is at one of its configured limits, such as open event streams."""

    code = "service_busy"
    retry_after = 5


class JobError(OffloadError):
    """Raised by a job handler to end an attempt with a reason."""

    code = "job_error"


class PermanentJobError(JobError):
    """Retrying cannot help (bad input, a 5xx SMTP reply, a corrupt file): the job fails at once."""

    code = "permanent_error"


class TransientJobError(JobError):
    """The attempt failed for a reason that may pass (timeout, 4xx SMTP reply): retry with backoff.

    ``retry_after`` (seconds), when given, is the least wait before the next attempt (a receiver's
    ``Retry-After``). ``counted=False`` says the attempt never reached what it depends on (a
    circuit breaker held it back): it waits and runs again without using up one of the job's
    retries (up to a bound, so that a job still ends).
    """

    code = "transient_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        counted: bool = True,
        **context: Any,
    ) -> None:
        super().__init__(message, code=code, **context)
        self.retry_after = retry_after
        self.counted = counted


class JobCancelled(JobError):
    """The handler saw a cancel request and stopped; the job ends ``cancelled``."""

    code = "cancelled"


class JobFailed(OffloadError):
    """Raised to Dramatiq when a job has ended for good, so that its message is dead-lettered.

    Not a handler's error: the runtime raises it after recording why the job ended.
    """

    code = "job_failed"
