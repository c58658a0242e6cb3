"""The email worker: ``dramatiq offload_email.worker:setup`` serves email and webhook deliveries."""

from __future__ import annotations

from collections.abc import Iterator

from offload.jobs import WorkerSpec
from offload.outbound import new_session
from offload.publish import Publisher
from offload.publish.publisher import settings_url_policy
from offload.status.breaker import CircuitBreaker
from offload.status.rates import SendRate
from offload.status.secrets import SecretStore
from offload.worker import Resources
from offload_email import handlers, webhooks
from offload_email.handlers import EmailHandlers
from offload_email.mailer import Mailer, SmtpMailer
from offload_email.settings import EmailSettings
from offload_email.webhooks import WebhookHandlers


def resources(settings: EmailSettings, publisher: Publisher, given: Resources) -> Iterator[object]:
    """The SMTP mailer (a test may give its own) and the webhook client, built once per process."""
    mailer = given.find(Mailer)  # type: ignore[type-abstract]  # any Mailer a test gives
    if mailer is None:
        rate = None
        if settings.smtp_rate_per_second:
            name = f"smtp:{settings.smtp_host}:{settings.smtp_port}"
            rate = SendRate(publisher.store, name, per_second=settings.smtp_rate_per_second)
        mailer = SmtpMailer(settings, rate)
    yield EmailHandlers(mailer=mailer, store=publisher.store, settings=settings)
    yield WebhookHandlers(
        store=publisher.store,
        secrets=SecretStore(publisher.store),
        url_policy=settings_url_policy(settings),
        session=new_session(),
        read_timeout=settings.webhook_timeout,
        breaker=CircuitBreaker(
            publisher.store,
            threshold=settings.webhook_breaker_threshold,
            cooldown=settings.webhook_breaker_cooldown,
        ),
    )


#: What this worker serves: the ``email`` and ``webhooks`` queues.
SPEC = WorkerSpec(
    name="email",
    jobs=(handlers.send, handlers.batch, webhooks.deliver),
    settings=EmailSettings,
    resources=resources,
)
#: What ``dramatiq offload_email.worker:setup`` calls in each worker process.
setup = SPEC.setup
