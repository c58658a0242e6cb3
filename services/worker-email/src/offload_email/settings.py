"""Settings of the email worker: the common ``OFFLOAD_*`` ones plus ``OFFLOAD_SMTP_*`` and web push's."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from offload.contracts import JobContract, SubmissionPolicy
from offload.errors import ConfigError
from offload.settings import Settings


class PushSettings(Settings):
    """How the push process signs and sends web push messages (``OFFLOAD_VAPID_*``, ``OFFLOAD_PUSH_*``).

    Only the push workers read the private key; they register its public half in Redis at boot,
    where the API finds it for ``GET /v1/push/vapid-public-key``.
    """

    #: The VAPID private key: a P-256 scalar, 32 bytes base64url (``offload push keys`` makes one).
    #: Required in production; elsewhere push.send fails ``push_not_configured`` without it.
    vapid_private_key: SecretStr = SecretStr("")
    #: Who push services may contact about these messages: ``mailto:`` or ``https:`` (RFC 8292 §2.1).
    vapid_subject: str = Field(default="mailto:push@offload.local", pattern=r"^(mailto:[^\s@]+@[^\s@]+|https://\S+)$")
    #: Seconds a push service has to answer (connecting has 3 s).
    push_timeout: float = Field(default=10.0, gt=0, le=60)
    #: Messages per second to one push service host, shared by every worker process (0: no limit).
    push_rate_per_second: int = Field(default=100, ge=0)
    #: Requests one push.send job has in flight at once (its subscriptions are sent a few at a time).
    push_concurrency: int = Field(default=4, ge=1, le=32)

    @field_validator("vapid_private_key")
    @classmethod
    def _a_p256_scalar(cls, value: SecretStr) -> SecretStr:
        """A 32-byte scalar in base64url (what ``offload push keys`` prints), or empty."""
        raw = value.get_secret_value().strip()
        if raw and not re.fullmatch(r"[A-Za-z0-9_-]{43}=?", raw):
            raise ValueError("not a P-256 private key: 32 bytes in base64url (make one with `offload push keys`)")
        return SecretStr(raw)

    def check_production(self) -> None:
        """Refuse production without a VAPID key, as weak secrets are refused.

        Raises:
            ConfigError: the key is missing or not a P-256 scalar in base64url.
        """
        super().check_production()
        if self.env != "production":
            return
        if not self.vapid_private_key.get_secret_value():
            raise ConfigError("OFFLOAD_VAPID_PRIVATE_KEY is empty; make one with `offload push keys`.")


class EmailSettings(PushSettings):
    """How to reach the SMTP server and who the mail is from."""

    #: SMTP host and port (587 for STARTTLS, 465 for implicit TLS, 1025 for a local Mailpit).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    #: ``none`` (local sinks only), ``starttls`` or ``tls`` (implicit TLS).
    smtp_security: Literal["none", "starttls", "tls"] = "none"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    #: Seconds for connecting and for each SMTP command.
    smtp_timeout: float = Field(default=10.0, gt=0, le=120)
    #: The From address (and optional display name) of every message.
    smtp_from: str = "Offload <no-reply@offload.local>"
    #: Messages per second to the SMTP provider, shared by every worker process (0: no limit).
    smtp_rate_per_second: int = Field(default=50, ge=0)
    #: Seconds a webhook receiver has to answer (connecting has 3 s).
    webhook_timeout: float = Field(default=10.0, gt=0, le=60)
    #: Webhook failures to one host (within a minute) that pause deliveries to it, and for how long (s).
    webhook_breaker_threshold: int = Field(default=5, ge=1)
    webhook_breaker_cooldown: int = Field(default=30, ge=1)
    #: Niceness of email and webhook worker processes: below the API (whose callers are waiting for
    #: an answer), above media and reports (CPU-heavy work that can wait a moment for an email).
    worker_nice: int = Field(default=5, ge=0, le=19)
    #: The domain part of Message-IDs (``<job_id@domain>``).
    smtp_message_id_domain: str = "offload.local"
    #: Emails (messages; batch recipients count one each) a tenant may submit per hour; 0: no limit.
    email_quota_per_hour: int = Field(default=10_000, ge=0)
    #: Recipient domains emails may go to, comma-separated (``example.com``; ``*.example.com`` for
    #: its subdomains); empty: any. Others are refused at submission, 422 ``recipient_not_allowed``.
    email_allowed_domains: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("email_allowed_domains", mode="before")
    @classmethod
    def _split_domains(cls, value: object) -> object:
        """Domain names, comma-separated in the environment."""
        return [n.strip().lower() for n in value.split(",") if n.strip()] if isinstance(value, str) else value

    def submission_policy(self, contract: JobContract) -> SubmissionPolicy:
        """The email types' quota and recipient domains, from ``OFFLOAD_EMAIL_*``.

        This worker registers them with its cards, so the API (which never reads these settings)
        refuses what this worker would: 429 past the quota, 422 ``recipient_not_allowed``.
        """
        if contract.quota != "email":
            return contract.policy
        return SubmissionPolicy.of(
            quota_per_hour=self.email_quota_per_hour, recipient_domains=self.email_allowed_domains
        )
