"""Settings of the email worker: the common ``OFFLOAD_*`` ones plus ``OFFLOAD_SMTP_*``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from offload.settings import Settings


class EmailSettings(Settings):
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
