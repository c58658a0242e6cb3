"""Sending messages: the ``Mailer`` protocol, the SMTP implementation and a recording double.

SMTP replies decide what happens next: a 5xx is permanent (``smtp_rejected``: the job fails at
once with the server's reply); a 4xx is a deferral (``smtp_deferred``) and a refused connection or
a timeout is an outage (``smtp_unavailable``), both transient (the job is retried with backoff). A
connection lost after the message was sent and before the server's reply is ``smtp_unconfirmed``:
retried too, so the message may arrive twice, with one ``Message-ID`` (at least once; F16d).
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from offload import tracing
from offload.errors import PermanentJobError, TransientJobError
from offload.status.rates import SendRate
from offload.tracing import SpanKind
from offload_email.compose import OutgoingMessage
from offload_email.settings import EmailSettings


@dataclass(frozen=True)
class Delivery:
    """What the server did with one message: who it accepted and who it refused (with its reply)."""

    accepted: list[str]
    refused: dict[str, str]


class Session(Protocol):
    """An open connection to the mail server, for several messages."""

    def send(self, message: OutgoingMessage, *, before_data: Callable[[], None] | None = None) -> Delivery:
        """Send ``message`` to all of its recipients on this connection."""
        ...


class Mailer(Protocol):
    """Anything that can send messages, one at a time or over one session."""

    def send(self, message: OutgoingMessage, *, before_data: Callable[[], None] | None = None) -> Delivery:
        """Send ``message`` to all of its recipients."""
        ...

    def session(self) -> AbstractContextManager[Session]:
        """A connection reused for many messages (batches)."""
        ...


def _reply(code: int, text: bytes | str) -> str:
    body = text.decode(errors="replace") if isinstance(text, bytes) else text
    return f"{code} {body}".strip()


@dataclass(frozen=True)
class SmtpMailer:
    """Sends over SMTP with ``smtplib``: plain (local sinks), STARTTLS or implicit TLS, optional login."""

    settings: EmailSettings
    rate: SendRate | None = None

    def send(self, message: OutgoingMessage, *, before_data: Callable[[], None] | None = None) -> Delivery:
        """Send ``message`` on a connection of its own (see :meth:`SmtpSession.send`).

        Raises:
            PermanentJobError: every recipient refused with a 5xx, or the message refused (``smtp_rejected``).
            TransientJobError: a 4xx, a refused connection or a timeout (``smtp_unavailable``).
        """
        with self.session() as session:
            return session.send(message, before_data=before_data)

    @contextmanager
    def session(self) -> Iterator[SmtpSession]:
        """One SMTP connection for many messages, closed (QUIT) at the end.

        Raises:
            TransientJobError: the server cannot be reached or refuses the connection.
        """
        try:
            smtp = self._connect()
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc, "The SMTP server refused the connection") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientJobError(f"Could not reach the SMTP server: {exc}", code="smtp_unavailable") from None
        try:
            yield SmtpSession(smtp, self.rate)
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()

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


@dataclass
class SmtpSession:
    """One open SMTP connection (``smtplib.SMTP`` resets the envelope between messages)."""

    smtp: smtplib.SMTP
    rate: SendRate | None = None

    def send(self, message: OutgoingMessage, *, before_data: Callable[[], None] | None = None) -> Delivery:
        """Send ``message``; some recipients may be refused while others are accepted.

        ``before_data`` runs once the recipients are accepted and just before the message itself is
        sent: the moment after which a crash leaves it unknown whether the server took the message.

        Raises:
            PermanentJobError: the message itself refused with a 5xx (``smtp_rejected``).
            TransientJobError: a 4xx (``smtp_deferred``), or the connection failed (``smtp_unavailable``).
        """
        attributes = {"offload.email.recipients": len(message.recipients)}
        with tracing.span("offload.email.send", kind=SpanKind.CLIENT, attributes=attributes):
            return self._send(message, before_data)

    def _send(self, message: OutgoingMessage, before_data: Callable[[], None] | None) -> Delivery:
        """:meth:`send` inside its span (tracing, when on: ``offload.tracing``)."""
        recipients = list(message.recipients)
        if self.rate is not None:
            self.rate.wait()
        handed_over = False
        try:
            replies = self._envelope(message, recipients)
            if len(replies) == len(recipients):
                self.smtp.rset()
                if any(reply.startswith("4") for reply in replies.values()):
                    raise TransientJobError(
                        f"The SMTP server deferred every recipient: {replies}", code="smtp_deferred"
                    )
                return Delivery([], replies)  # refused for good: the caller decides what that means
            if before_data is not None:
                before_data()
            handed_over = True
            code, reply = self.smtp.data(message.data)
            if code != 250:
                self.smtp.rset()
                raise smtplib.SMTPDataError(code, reply)
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc, "The SMTP server refused the message") from None
        except (OSError, smtplib.SMTPException) as exc:
            if handed_over:
                # The line dropped after the message went out and before the server's reply: it may
                # have been delivered. The retry sends it again with the same Message-ID (receivers
                # drop the copy); this code marks the attempt so the possible duplicate is known.
                raise TransientJobError(
                    f"The SMTP connection dropped before the server confirmed the message: {exc}",
                    code="smtp_unconfirmed",
                ) from None
            raise TransientJobError(f"The SMTP connection failed: {exc}", code="smtp_unavailable") from None
        return Delivery([r for r in recipients if r not in replies], replies)

    def _envelope(self, message: OutgoingMessage, recipients: list[str]) -> dict[str, str]:
        """MAIL FROM and RCPT TO; returns the refused recipients with the server's replies.

        Raises:
            smtplib.SMTPSenderRefused: the sender was refused.
        """
        self.smtp.ehlo_or_helo_if_needed()
        sender = message.sender
        code, reply = self.smtp.mail(sender)
        if code != 250:
            self.smtp.rset()
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        refused = {}
        for recipient in recipients:
            code, reply = self.smtp.rcpt(recipient)
            if code not in (250, 251):
                refused[recipient] = _reply(code, reply)
        return refused


def _classify(exc: smtplib.SMTPResponseException, what: str) -> PermanentJobError | TransientJobError:
    reply = _reply(exc.smtp_code, exc.smtp_error)
    if exc.smtp_code >= 500:
        return PermanentJobError(f"{what}: {reply}", code="smtp_rejected")
    return TransientJobError(f"{what} for now: {reply}", code="smtp_deferred")


@dataclass
class RecordingMailer:
    """A test double that keeps what it was asked to send (per instance, never shared)."""

    sent: list[OutgoingMessage] = field(default_factory=list)
    sessions: int = 0

    def send(self, message: OutgoingMessage, *, before_data: Callable[[], None] | None = None) -> Delivery:
        """Record ``message`` and accept every recipient."""
        if before_data is not None:
            before_data()
        self.sent.append(message)
        return Delivery(list(message.recipients), {})

    @contextmanager
    def session(self) -> Iterator[RecordingMailer]:
        """Count a session; messages are recorded as with :meth:`send`."""
        self.sessions += 1
        yield self
