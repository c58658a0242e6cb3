"""The email worker's job handlers: thin, over ``compose`` (pure) and a ``Mailer`` (I/O)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from offload.contracts.email import (
    BATCH,
    SEND,
    BatchOutcome,
    BatchRecipient,
    Recipient,
    SendBatchPayload,
    SendBatchResult,
    SendEmailPayload,
    SendEmailResult,
)
from offload.errors import JobError, PermanentJobError, TransientJobError
from offload.jobs import served_by
from offload.status import StatusStore
from offload.status.effects import Effects
from offload.worker import JobContext
from offload_email.compose import compose, compose_message
from offload_email.mailer import Mailer, Session
from offload_email.settings import EmailSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmailHandlers:
    """Entry points for the ``email`` queue, holding the clients they need."""

    mailer: Mailer
    store: StatusStore
    settings: EmailSettings

    def send(self, ctx: JobContext, payload: SendEmailPayload) -> SendEmailResult:
        """Send one templated email, at most once per job (a redelivered job finds the sent marker).

        Raises:
            PermanentJobError: every recipient was refused with a 5xx, or the message is invalid.
            TransientJobError: the server deferred or could not be reached (retried with backoff).
        """
        message = compose(
            payload,
            job_id=ctx.job_id,
            sender=self.settings.smtp_from,
            message_id_domain=self.settings.smtp_message_id_domain,
        )
        effects = Effects(self.store)
        recipients = [r.email for r in [*payload.to, *payload.cc]]
        ttl = self.settings.retention_failed
        state = effects.marker("email", ctx.job_id)
        if state:
            # "sent": a redelivery after success. "sending": the worker stopped after handing the
            # message over and before hearing back; the server most likely has it, so it is not
            # sent again (a duplicate is worse than the rare loss; reliability-security.md D4).
            logger.info("Email of job %s was already %s; not sending it again.", ctx.job_id, state)
            ctx.count("duplicate_not_sent")
            return SendEmailResult(message_id=message.message_id, recipients=recipients, duplicate=True)

        def handing_over() -> None:
            effects.mark("email", ctx.job_id, "sending", ttl_s=ttl)

        try:
            delivery = self.mailer.send(message, before_data=handing_over)
        except JobError:
            effects.unmark("email", ctx.job_id)  # the server answered (or the line dropped): not taken
            raise
        effects.mark("email", ctx.job_id, "sent", ttl_s=ttl)
        if delivery.refused:
            logger.warning("Some recipients were refused: %s", delivery.refused)
        if not delivery.accepted:
            raise PermanentJobError(f"Every recipient was refused: {delivery.refused}", code="smtp_rejected")
        return SendEmailResult(message_id=message.message_id, recipients=delivery.accepted, duplicate=False)

    def batch(self, ctx: JobContext, payload: SendBatchPayload) -> SendBatchResult:
        """Send one message per recipient over one SMTP session, recording each outcome as it happens.

        A redelivered or retried batch resumes: recipients already recorded are not sent again.
        A refusal or deferral of one recipient is its outcome; only a lost connection stops the
        batch (and the job retries from where it stopped).

        Raises:
            TransientJobError: the SMTP server could not be reached or dropped the connection.
        """
        effects = Effects(self.store)
        done = {
            int(i): BatchOutcome.model_validate_json(v) for i, v in effects.journal("email-batch", ctx.job_id).items()
        }
        outcomes: list[BatchOutcome] = []
        total = len(payload.recipients)
        journal = _Journal(effects, ctx.job_id)
        try:
            with self.mailer.session() as session:
                for index, recipient in enumerate(payload.recipients):
                    outcome = done.get(index) or self._send_one(session, ctx, payload, index, recipient, journal)
                    if index not in done:
                        journal.record(index, outcome)
                    outcomes.append(outcome)
                    ctx.progress(100 * (index + 1) / total, f"{index + 1}/{total} recipients")
        finally:
            journal.flush()
        effects.write("email-batch", ctx.job_id, {}, ttl_s=self.settings.retention_failed)
        count = {status: sum(o.status == status for o in outcomes) for status in ("sent", "rejected", "failed")}
        return SendBatchResult(**count, recipients=outcomes)

    def _send_one(
        self,
        session: Session,
        ctx: JobContext,
        payload: SendBatchPayload,
        index: int,
        recipient: BatchRecipient,
        journal: _Journal,
    ) -> BatchOutcome:
        message_id = f"<{ctx.job_id}.{index}@{self.settings.smtp_message_id_domain}>"
        person = Recipient(email=recipient.email, name=recipient.name)
        unconfirmed = BatchOutcome(
            email=recipient.email,
            status="sent",
            message_id=message_id,
            reply="Unconfirmed: the worker stopped while handing this message over; not sent again.",
        )

        def handing_over() -> None:  # if the worker dies now, a redelivery will not send it twice
            journal.record(index, unconfirmed)
            journal.flush()

        try:
            message = compose_message(
                payload.template,
                {**payload.vars, **recipient.vars},
                to=[person],
                subject=payload.subject,
                reply_to=payload.reply_to,
                job_id=ctx.job_id,
                message_id=message_id,
                sender=self.settings.smtp_from,
            )
            delivery = session.send(message, before_data=handing_over)
        except PermanentJobError as exc:
            status = "rejected" if exc.code == "smtp_rejected" else "failed"
            return BatchOutcome(email=recipient.email, status=status, reply=exc.message, message_id=message_id)
        except TransientJobError as exc:
            if exc.code != "smtp_deferred":
                journal.forget(index)  # the line dropped: send it again on retry
                raise
            return BatchOutcome(email=recipient.email, status="failed", reply=exc.message, message_id=message_id)
        if delivery.refused:
            reply = next(iter(delivery.refused.values()))
            return BatchOutcome(email=recipient.email, status="rejected", reply=reply, message_id=message_id)
        return BatchOutcome(email=recipient.email, status="sent", message_id=message_id)


class _Journal:
    """A batch's per-recipient outcomes in Redis, written with as few round trips as is safe.

    The only write that must reach Redis before the next step is the "handing over" marker of a
    recipient, just before its message data goes to the server: it is what stops a redelivered
    batch from sending that message twice. Final outcomes ride along with the next such write (or
    the last flush), halving the round trips per recipient. If the worker dies in between, an
    outcome that was not written yet is either the "sent (unconfirmed)" marker, still true, or a
    refusal, which a resumed batch simply asks the server about again (nothing is sent twice).
    """

    def __init__(self, effects: Effects, job_id: str) -> None:
        self.effects = effects
        self.job_id = job_id
        self.pending: dict[str, str] = {}

    def record(self, index: int, outcome: BatchOutcome) -> None:
        """Remember ``outcome`` for the next write."""
        self.pending[str(index)] = outcome.model_dump_json()

    def forget(self, index: int) -> None:
        """Drop what is known of recipient ``index`` (its message must be sent again)."""
        self.pending.pop(str(index), None)
        self.flush()
        self.effects.erase("email-batch", self.job_id, str(index))

    def flush(self) -> None:
        """Write everything remembered, in one command."""
        if self.pending:
            self.effects.write("email-batch", self.job_id, self.pending)
            self.pending = {}


#: The job types these handlers serve, each bound to its contract.
send = served_by(EmailHandlers, EmailHandlers.send, SEND)
batch = served_by(EmailHandlers, EmailHandlers.batch, BATCH)
