"""The email worker: ``dramatiq offload_email.worker:setup`` serves email, webhook deliveries and web push.

Each runs in a process of its own (``--queues email system``, ``--queues webhooks system``,
``--queues push system``): a receiver or push service that hangs holds only its own threads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from offload.jobs import WorkerSpec
from offload.outbound import new_session
from offload.publish import Publisher
from offload.publish.publisher import settings_url_policy
from offload.status.breaker import CircuitBreaker
from offload.status.push import PushSubscriptions
from offload.status.rates import SendRate
from offload.status.secrets import SecretStore
from offload.vapid import public_key_of
from offload.worker import Resources
from offload_email import handlers, push, webhooks
from offload_email.handlers import EmailHandlers
from offload_email.mailer import Mailer, SmtpMailer
from offload_email.push import PushHandlers
from offload_email.settings import EmailSettings
from offload_email.webhooks import WebhookHandlers

logger = logging.getLogger(__name__)


def resources(settings: EmailSettings, publisher: Publisher, given: Resources) -> Iterator[object]:
    """The SMTP mailer (a test may give its own), the webhook client and the push sender, built once per process.

    With a VAPID key, the public key is registered in Redis, where the API serves it to browsers.
    """
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
    private_key = settings.vapid_private_key.get_secret_value()
    if private_key:
        replaced = PushSubscriptions(publisher.store).register_public_key(public_key_of(private_key))
        if replaced:
            logger.warning("The VAPID key changed: subscriptions made with the old one will be refused.")
    yield PushHandlers(
        store=publisher.store,
        url_policy=settings_url_policy(settings),
        session=new_session(),
        private_key=private_key,
        subject=settings.vapid_subject,
        rate_per_second=settings.push_rate_per_second,
        read_timeout=settings.push_timeout,
        retention_s=settings.retention_failed,
        concurrency=settings.push_concurrency,
    )


#: What this worker serves: the ``email``, ``webhooks`` and ``push`` queues.
SPEC = WorkerSpec(
    name="email",
    jobs=(handlers.send, handlers.batch, webhooks.deliver, push.send),
    settings=EmailSettings,
    resources=resources,
)
#: What ``dramatiq offload_email.worker:setup`` calls in each worker process.
setup = SPEC.setup
