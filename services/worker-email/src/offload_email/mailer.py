"""Sending messages: the ``Mailer`` protocol, the SMTP implementation and a recording double.

SMTP replies decide what happens next: a 5xx is permanent (the job fails at once with the
server's reply); a 4xx, a refused connection or a timeout is transient (the job is retried with
backoff).
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol

from offload.errors import PermanentJobError, TransientJobError
from offload_email.settings import EmailSettings


@dataclass(frozen=True)
class Delivery:
    """What the server did with one message: who it accepted and who it refused (with its reply)."""

    accepted: list[str]
    refused: dict[str, str]


class Mailer(Protocol):
    """Anything that can send a message."""

    def send(self, message: EmailMessage) -> Delivery:
        """Send ``message`` to all of its recipients."""
        ...


def _reply(code: int, text: bytes | str) -> str:
    body = text.decode(errors="replace") if isinstance(text, bytes) else text
    return f"{code} {body}".strip()


def _recipients(message: EmailMessage) -> list[str]:
    found = []
    for header in ("To", "Cc", "Bcc"):
        for addr in getattr(message[header], "addresses", ()) if message[header] else ():
            found.append(addr.addr_spec)
    return found


@dataclass(frozen=True)
class SmtpMailer:
    """Sends over SMTP with ``smtplib``: plain (local sinks), STARTTLS or implicit TLS, optional login."""

    settings: EmailSettings

    def send(self, message: EmailMessage) -> Delivery:
        """Send ``message``; some recipients may be refused while others are accepted.

        Raises:
            PermanentJobError: the server refused with a 5xx (code ``smtp_rejected``).
            TransientJobError: a 4xx, a refused connection or a timeout (code ``smtp_unavailable``).
        """
        recipients = _recipients(message)
        try:
            with self._connect() as smtp:
                refused = smtp.send_message(message, to_addrs=recipients)
        except smtplib.SMTPRecipientsRefused as exc:
            return self._all_refused(exc)
        except smtplib.SMTPResponseException as exc:
            reply = _reply(exc.smtp_code, exc.smtp_error)
            if exc.smtp_code >= 500:
                raise PermanentJobError(
                    f"The SMTP server rejected the message: {reply}", code="smtp_rejected"
                ) from None
            raise TransientJobError(f"The SMTP server deferred the message: {reply}", code="smtp_unavailable") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientJobError(f"Could not reach the SMTP server: {exc}", code="smtp_unavailable") from None
        rejected = {addr: _reply(code, text) for addr, (code, text) in refused.items()}
        return Delivery([r for r in recipients if r not in rejected], rejected)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.smtp_security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                s.smtp_host, s.smtp_port, timeout=s.smtp_timeout, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
        if s.smtp_security == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        if s.smtp_username:
            smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
        return smtp

    @staticmethod
    def _all_refused(exc: smtplib.SMTPRecipientsRefused) -> Delivery:
        refused = {addr: _reply(code, text) for addr, (code, text) in exc.recipients.items()}
        if any(reply.startswith("4") for reply in refused.values()):
            raise TransientJobError(f"The SMTP server deferred every recipient: {refused}", code="smtp_unavailable")
        raise PermanentJobError(f"The SMTP server refused every recipient: {refused}", code="smtp_rejected")


@dataclass
class RecordingMailer:
    """A test double that keeps what it was asked to send (per instance, never shared)."""

    sent: list[EmailMessage] = field(default_factory=list)

    def send(self, message: EmailMessage) -> Delivery:
        """Record ``message`` and accept every recipient."""
        self.sent.append(message)
        return Delivery(_recipients(message), {})
