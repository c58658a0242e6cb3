"""Jobs consumed by services/worker-email: transactional email from templates shipped with the worker."""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal, get_args

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

from offload.contracts._base import JobContract, Payload, RetryPolicy, SubmissionPolicy

EMAIL_QUEUE = "email"

#: The templates the email worker ships (``services/worker-email/.../templates/<name>/``).
#: An unknown name is a 422 at the API, never a failed job.
Template = Literal["welcome", "password_reset", "report_ready", "order_confirmation", "order_payment_failed"]
TEMPLATE_NAMES: tuple[str, ...] = get_args(Template)
#: Variables each template cannot do without (checked at submission: a missing one is a 422).
REQUIRED_VARS: dict[str, tuple[str, ...]] = {
    "welcome": ("name",),
    "password_reset": ("name", "reset_url"),
    "report_ready": ("title", "download_url"),
    "order_confirmation": ("name", "order_id"),
    "order_payment_failed": ("name", "order_id"),
}

#: Template variables whose name ends in this are links (the templates put them in ``href``): each
#: must be an absolute ``https`` URL, or ``http`` where the deployment allows it, checked at
#: submission (``offload.submission``) and again when the email is rendered (issue 29, item 9).
LINK_SUFFIX = "_url"

#: CR, LF and every Unicode line break: any of them in a header value would let a caller add headers
#: (reliability-security.md §7.3).
LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _single_line(value: str) -> str:
    if LINE_BREAKS.search(value):
        raise PydanticCustomError("invalid_header_value", "must not contain line breaks (header injection)")
    return value


def _address(value: str) -> str:
    if LINE_BREAKS.search(value):
        raise PydanticCustomError("invalid_address", "must not contain line breaks (header injection)")
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise PydanticCustomError(
            "invalid_address", "not a single valid email address: {reason}", {"reason": str(exc)}
        ) from None


HeaderText = Annotated[str, AfterValidator(_single_line)]
EmailAddress = Annotated[str, Field(max_length=254, json_schema_extra={"format": "email"}), AfterValidator(_address)]
VarName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
VarValue = Annotated[str, Field(max_length=2000)] | int | float | bool | None


class Recipient(Payload):
    """One address, with an optional display name."""

    email: EmailAddress
    name: HeaderText | None = Field(default=None, max_length=100)


class SendEmailPayload(Payload):
    """One templated email (HTML and text parts) to a short To/Cc list.

    Template variables are data: they are escaped in the HTML part and never evaluated, so
    ``{{7*7}}`` arrives as written.
    """

    #: The fields whose addresses are sent to (checked against OFFLOAD_EMAIL_ALLOWED_DOMAINS).
    sent_to: ClassVar[tuple[str, ...]] = ("to", "cc")
    #: The template variables, whose ``*_url`` entries are links (:data:`LINK_SUFFIX`).
    linked_vars: ClassVar[tuple[str, ...]] = ("vars",)

    to: list[Recipient] = Field(min_length=1, max_length=10)
    cc: list[Recipient] = Field(default_factory=list, max_length=10)
    template: Template
    vars: dict[VarName, VarValue] = Field(default_factory=dict, max_length=50)
    subject: HeaderText | None = Field(default=None, max_length=200, description="Overrides the template's subject.")
    reply_to: Recipient | None = None

    @model_validator(mode="after")
    def _has_required_vars(self) -> SendEmailPayload:
        missing = [name for name in REQUIRED_VARS[self.template] if name not in self.vars]
        if missing:
            raise ValueError(f"template {self.template!r} needs vars {missing}")
        return self


class SendEmailResult(BaseModel):
    """What ``email.send`` returns."""

    message_id: str
    recipients: list[str]
    duplicate: bool = Field(description="True when a redelivered job found the email already sent.")


#: The most recipients one ``email.batch`` job may carry.
MAX_BATCH_RECIPIENTS = 1000


class BatchRecipient(Payload):
    """One recipient of a batch, with variables of its own (merged over the batch's)."""

    #: The template variables, whose ``*_url`` entries are links (:data:`LINK_SUFFIX`).
    linked_vars: ClassVar[tuple[str, ...]] = ("vars",)

    email: EmailAddress
    name: HeaderText | None = Field(default=None, max_length=100)
    vars: dict[VarName, VarValue] = Field(default_factory=dict, max_length=50)


class SendBatchPayload(Payload):
    """One template sent separately to many recipients over one SMTP session."""

    template: Template
    #: The fields whose addresses are sent to (checked against OFFLOAD_EMAIL_ALLOWED_DOMAINS).
    sent_to: ClassVar[tuple[str, ...]] = ("recipients",)
    #: The template variables, whose ``*_url`` entries are links (:data:`LINK_SUFFIX`).
    linked_vars: ClassVar[tuple[str, ...]] = ("vars",)

    recipients: list[BatchRecipient] = Field(min_length=1, max_length=MAX_BATCH_RECIPIENTS)
    vars: dict[VarName, VarValue] = Field(default_factory=dict, max_length=50, description="Shared by all.")
    subject: HeaderText | None = Field(default=None, max_length=200)
    reply_to: Recipient | None = None

    @model_validator(mode="after")
    def _has_required_vars(self) -> SendBatchPayload:
        for index, recipient in enumerate(self.recipients):
            missing = [n for n in REQUIRED_VARS[self.template] if n not in recipient.vars and n not in self.vars]
            if missing:
                raise ValueError(f"recipients[{index}]: template {self.template!r} needs vars {missing}")
        return self


class BatchOutcome(BaseModel):
    """What happened for one recipient of a batch."""

    email: str
    status: Literal["sent", "rejected", "failed", "duplicate"]
    reply: str | None = Field(default=None, description="The SMTP server's reply when it refused or deferred.")
    message_id: str


class SendBatchResult(BaseModel):
    """What ``email.batch`` returns."""

    sent: int
    rejected: int
    failed: int
    recipients: list[BatchOutcome]


SEND = JobContract(
    name="email.send",
    queue=EMAIL_QUEUE,
    payload=SendEmailPayload,
    result=SendEmailResult,
    description="Sends one templated email (HTML + text) over SMTP; idempotent per job.",
    retry=RetryPolicy(max_retries=5, max_retries_limit=10, min_backoff=5, max_backoff=600),
    time_limit=60,
    quota="email",
    policy=SubmissionPolicy(quota_per_hour=10_000),
)

BATCH = JobContract(
    name="email.batch",
    queue=EMAIL_QUEUE,
    payload=SendBatchPayload,
    result=SendBatchResult,
    description="Sends one template to up to 1,000 recipients over one SMTP session, with a result per recipient.",
    retry=RetryPolicy(max_retries=5, max_retries_limit=10, min_backoff=5, max_backoff=600),
    time_limit=900,
    quota="email",
    policy=SubmissionPolicy(quota_per_hour=10_000),
    units=lambda payload: len(payload.recipients),
)

CONTRACTS = (SEND, BATCH)
