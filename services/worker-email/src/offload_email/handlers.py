"""The email worker's job handlers: thin, over ``compose`` (pure) and a ``Mailer`` (I/O)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from offload.contracts.email import SendEmailPayload, SendEmailResult
from offload.errors import PermanentJobError
from offload.status import StatusStore
from offload.worker import Handler, JobContext
from offload_email.compose import compose
from offload_email.mailer import Mailer
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
        marker = self.store.key("effect", "email", ctx.job_id)
        recipients = [r.email for r in [*payload.to, *payload.cc]]
        if self.store.client.get(marker):
            logger.info("Email of job %s was already sent; not sending it again.", ctx.job_id)
            return SendEmailResult(message_id=message["Message-ID"], recipients=recipients, duplicate=True)
        delivery = self.mailer.send(message)
        self.store.client.set(marker, "sent", ex=self.settings.retention_failed)
        if delivery.refused:
            logger.warning("Some recipients were refused: %s", delivery.refused)
        if not delivery.accepted:
            raise PermanentJobError(f"Every recipient was refused: {delivery.refused}", code="smtp_rejected")
        return SendEmailResult(message_id=message["Message-ID"], recipients=delivery.accepted, duplicate=False)

    def handlers(self) -> dict[str, Handler]:
        """The handlers by job type."""
        return {"email.send": self.send}
