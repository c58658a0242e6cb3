"""Publishing on the wire as another service would: its own RabbitMQ user, plain pika, docs/wire-format.md.

Fixtures: ``orders``, a publisher's user (per test module) mapped to tenants acme and beta by
``wire_settings`` (the test settings with that mapping; a module uses them as its ``settings``).

RabbitMQ users are global to the broker, so each test session names its own after its vhost and
deletes them when done. They get exactly the permissions docs/wire-format.md gives a publisher:
configure nothing, write the default exchange, read nothing.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pika
import pika.exceptions
import pytest

from offload.publish import Publisher
from offload.settings import Settings
from offload.status import JobRecord
from tests.helpers import wait_for
from tests.support import AMQP_URL, TEST_VHOST, make_settings


def rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``rabbitmqctl`` (a test's broker users and their permissions)."""
    return subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=60)


@dataclass(frozen=True)
class BrokerUser:
    """A RabbitMQ user of the test vhost: its login and the URL it connects with."""

    name: str
    url: str


@contextmanager
def broker_user(role: str) -> Iterator[BrokerUser]:
    """A publisher's RabbitMQ user for the duration (publish-only on the test vhost); deleted after."""
    name = f"{TEST_VHOST}_{role}"
    password = secrets.token_hex(12)
    if name in rabbitmqctl("list_users", "-q").stdout.split():  # left by a run that was killed
        rabbitmqctl("delete_user", name)
    rabbitmqctl("add_user", name, password)
    try:
        rabbitmqctl("set_permissions", "-p", TEST_VHOST, name, "^$", r"^amq\.default$", "^$")
        host = AMQP_URL.split("@", 1)[1]
        yield BrokerUser(name, f"amqp://{quote(name, safe='')}:{password}@{host}")
    finally:
        rabbitmqctl("delete_user", name)


def wire_message(
    job_type: str,
    queue: str,
    payload: Any,
    *,
    tenant: str | None = "acme",
    job_id: str | None = None,
    **offload: Any,
) -> dict[str, Any]:
    """A message as docs/wire-format.md documents it, built by hand (as another language would)."""
    job_id = job_id or str(uuid.uuid4())
    block: dict[str, Any] = {"v": 1, **({"tenant": tenant} if tenant is not None else {}), **offload}
    return {
        "queue_name": queue,
        "actor_name": job_type,
        "args": [],
        "kwargs": {"job_id": job_id, "payload": payload},
        "options": {"broker_priority": 2, "offload": block},
        "message_id": job_id,
        "message_timestamp": int(time.time() * 1000),
    }


_UNSET: Any = object()


def publish_as(
    user: BrokerUser,
    queue: str,
    message: dict[str, Any] | bytes,
    *,
    user_id: str | None = _UNSET,
    headers: dict[str, str] | None = None,
) -> None:
    """Publish on the default exchange as ``user``, persistent, confirmed, with ``user_id`` = its login.

    ``headers`` go in the AMQP headers table (an instrumented client's ``traceparent``, say).
    ``user_id=None`` leaves the property out; another value is one RabbitMQ refuses (the channel closes).
    A message returned unroutable (its queue not declared yet: a publisher cannot declare it, the
    workers do as they start) is published again for a few seconds, as docs/wire-format.md advises.
    """
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    connection = pika.BlockingConnection(pika.URLParameters(user.url))
    deadline = time.monotonic() + 10
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        properties = pika.BasicProperties(
            delivery_mode=2,
            content_type="application/json",
            user_id=user.name if user_id is _UNSET else user_id,
            headers=headers,
        )
        while True:
            try:
                channel.basic_publish("", queue, body, properties, mandatory=True)
                return
            except pika.exceptions.UnroutableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        if connection.is_open:
            connection.close()


def ended(publisher: Publisher, job_id: str, timeout: float = 15) -> JobRecord:
    """The record of job ``job_id`` once it has ended (fails the test after ``timeout`` seconds)."""
    wait_for(
        lambda: (record := publisher.get(job_id)) is not None and record.state.terminal,
        timeout=timeout,
        interval=0.05,
        message=lambda: f"job {job_id} did not end: {publisher.get(job_id)}",
    )
    record = publisher.get(job_id)
    assert record is not None
    return record


def grants(**users: dict[str, Any]) -> str:
    """``OFFLOAD_WIRE_PUBLISHERS`` for ``role=grant`` pairs (each role's user as :func:`broker_user` names it)."""
    return json.dumps({f"{TEST_VHOST}_{role}": grant for role, grant in users.items()})


#: The grant of the ``orders`` user: tenants acme (its own) and beta, every job type clients may submit.
ORDERS_GRANTS = grants(orders={"tenants": ["acme", "beta"]})


@pytest.fixture(scope="module")
def orders() -> Iterator[BrokerUser]:
    """The broker user of a publishing service (mapped to tenants acme and beta by ``wire_settings``)."""
    with broker_user("orders") as user:
        yield user


@pytest.fixture
def wire_settings(servers: None, orders: BrokerUser) -> Settings:
    """The test settings with the ``orders`` user mapped (:data:`ORDERS_GRANTS`)."""
    return make_settings(wire_publishers=ORDERS_GRANTS)
