"""Worker entry point: ``dramatiq offload_email.worker:setup --queues email system``."""

from __future__ import annotations

from dramatiq.brokers.rabbitmq import RabbitmqBroker

from offload.publish import Publisher
from offload.settings import load_settings
from offload.worker import build_worker
from offload_email.handlers import EmailHandlers
from offload_email.mailer import Mailer, SmtpMailer
from offload_email.settings import EmailSettings

#: The domain queues this worker consumes (besides ``system``).
QUEUES = ("email",)
#: The job types this worker serves (besides the system ones).
JOB_TYPES = ("email.send", "email.batch")


def build(
    settings: EmailSettings, *, mailer: Mailer | None = None, publisher: Publisher | None = None
) -> RabbitmqBroker:
    """This worker's broker and actors, from explicit settings (tests pass their own)."""
    publisher = publisher or Publisher.from_settings(settings, pin_connections=True)
    handlers = EmailHandlers(mailer=mailer or SmtpMailer(settings), store=publisher.store, settings=settings)
    return build_worker(settings, queues=QUEUES, handlers=handlers.handlers(), publisher=publisher)


def setup() -> RabbitmqBroker:
    """Build this worker's broker and actors; the Dramatiq CLI calls it in each worker process."""
    return build(load_settings(EmailSettings))
