"""The shop's test rig: real RabbitMQ and Redis (``offload.testing``), a real SMTP server (aiosmtpd),
the fake payment gateway on loopback, and the real workers (the shop's and Offload's email worker).

The shop keeps its own data in the test's Redis database under a prefix of its own, so it is
flushed with the rest after each test, and each pytest-xdist process has its own.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pika
import pika.exceptions
import pytest
from aiosmtpd.controller import Controller
from offload_orders.fake_gateway import FakeGateway
from offload_orders.settings import ShopSettings
from offload_orders.store import ShopStore
from offload_orders.testing import free_port
from offload_orders.worker import SPEC

from offload import Publisher, Settings
from offload.testing import serving
from offload_email.settings import EmailSettings
from offload_email.worker import SPEC as EMAIL_SPEC

#: The products every test's shop sells: sku -> (price in cents, stock).
CATALOGUE = {"mug": (1250, 100), "tee": (2599, 100), "poster": (900, 5)}


@dataclass
class Mailbox:
    """What the SMTP server received."""

    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"

    def subjects(self) -> list[str]:
        with self.lock:
            return [str(message["Subject"]) for message in self.messages]


#: The queues the shop's jobs travel on, in the test's vhost.
QUEUES = (*SPEC.queues, *EMAIL_SPEC.queues)


def purge_queues(broker_url: str) -> None:
    """Empty the shop's queues: a job left there (a checkout a test made with no worker running) would
    otherwise reach the next test's worker, find its record flushed and be adopted as a new job."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        for queue in QUEUES:
            with contextlib.suppress(pika.exceptions.ChannelClosedByBroker):
                channel.queue_purge(queue)
            if channel.is_closed:
                channel = connection.channel()
    finally:
        connection.close()


@pytest.fixture(autouse=True)
def empty_queues(offload_settings: Settings) -> Iterator[None]:
    """Every test starts and ends with the shop's queues empty."""
    purge_queues(offload_settings.broker_url.get_secret_value())
    yield
    purge_queues(offload_settings.broker_url.get_secret_value())


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    with FakeGateway() as server:
        yield server


@pytest.fixture
def shop_settings(offload_settings: Settings, gateway: FakeGateway) -> ShopSettings:
    """The shop's settings on the test's vhost and Redis db; a breaker quick to open and to close."""
    return ShopSettings(
        **{
            **offload_settings.model_dump(),
            "orders_redis_url": offload_settings.redis_url,
            "orders_prefix": "orders-test:",
            "orders_gateway_url": gateway.url,
            "orders_gateway_timeout": 1.0,
            "orders_breaker_threshold": 3,
            "orders_breaker_cooldown": 1,
            "retry_backoff_scale": 0.1,
        }
    )


@pytest.fixture
def store(shop_settings: ShopSettings) -> Iterator[ShopStore]:
    shop = ShopStore.from_url(shop_settings.orders_redis_url.get_secret_value(), shop_settings.orders_prefix)
    for sku, (price, stock) in CATALOGUE.items():
        shop.stock_item(sku, price_cents=price, stock=stock)
    yield shop
    shop.close()


@pytest.fixture
def pipeline(
    shop_settings: ShopSettings, store: ShopStore, mailbox: tuple[Mailbox, int]
) -> Callable[..., contextlib.AbstractContextManager[Publisher]]:
    """``with pipeline() as publisher:`` runs the shop's worker and the email worker in this process."""

    @contextlib.contextmanager
    def run(threads: int = 8) -> Iterator[Publisher]:
        email_settings = EmailSettings(
            **{**shop_settings.model_dump(), "smtp_port": mailbox[1], "smtp_rate_per_second": 0}
        )
        client = Publisher.from_settings(shop_settings, local=SPEC.contracts)
        try:
            with (
                serving(SPEC, shop_settings, threads=threads),
                serving(EMAIL_SPEC, email_settings, threads=threads),
            ):
                yield client
        finally:
            client.close()

    return run
