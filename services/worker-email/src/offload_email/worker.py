"""Worker entry point: ``dramatiq offload_email.worker:setup --queues email webhooks system``."""

from __future__ import annotations

from dramatiq.brokers.rabbitmq import RabbitmqBroker

from offload.breaker import CircuitBreaker
from offload.outbound import new_session
from offload.publish import Publisher
from offload.publish.publisher import settings_url_policy
from offload.settings import load_settings
from offload.webhooks import SecretStore
from offload.worker import build_worker
from offload.worker.priority import yield_cpu
from offload_email.handlers import EmailHandlers
from offload_email.mailer import Mailer, SendRate, SmtpMailer
from offload_email.settings import EmailSettings
from offload_email.webhooks import WebhookHandlers

#: The domain queues this worker consumes (besides ``system``): email, and webhooks to call clients back.
QUEUES = ("email", "webhooks")
#: The job types this worker serves (besides the system ones).
JOB_TYPES = ("email.send", "email.batch", "webhook.deliver")


def build(
    settings: EmailSettings, *, mailer: Mailer | None = None, publisher: Publisher | None = None
) -> RabbitmqBroker:
    """This worker's broker and actors, from explicit settings (tests pass their own)."""
    publisher = publisher or Publisher.from_settings(settings, pin_connections=True)
    rate = None
    if settings.smtp_rate_per_second:
        key = f"{settings.redis_prefix}:smtp-rate:{settings.smtp_host}:{settings.smtp_port}"
        rate = SendRate(publisher.store.client, key=key, per_second=settings.smtp_rate_per_second)
    email = EmailHandlers(mailer=mailer or SmtpMailer(settings, rate), store=publisher.store, settings=settings)
    webhooks = WebhookHandlers(
        store=publisher.store,
        secrets=SecretStore(publisher.store.client, prefix=settings.redis_prefix),
        url_policy=settings_url_policy(settings),
        session=new_session(),
        read_timeout=settings.webhook_timeout,
        breaker=CircuitBreaker(
            publisher.store.client,
            prefix=settings.redis_prefix,
            threshold=settings.webhook_breaker_threshold,
            cooldown=settings.webhook_breaker_cooldown,
        ),
    )
    handlers = {**email.handlers(), **webhooks.handlers()}
    return build_worker(settings, queues=QUEUES, handlers=handlers, publisher=publisher)


def setup() -> RabbitmqBroker:
    """Build this worker's broker and actors; the Dramatiq CLI calls it in each worker process."""
    settings = load_settings(EmailSettings)
    yield_cpu(settings.worker_nice)
    return build(settings)
