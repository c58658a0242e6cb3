"""The confirming publisher against a real full queue (``max-length`` with ``reject-publish``), and
against a real broker made slow or silent by the fault proxy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pika
import pytest

from offload.errors import BrokerUnavailable
from offload.publish.amqp import RECONNECT_PAUSE, ConfirmingPublisher
from tests.chaos.proxy import FaultProxy
from tests.support import AMQP_URL, queue_depth

#: Seconds a nacked queue is taken as full here: long enough that a slow purge stays inside it.
PAUSE = 1.0
QUEUE = "offloadtest.full"
OTHER = "offloadtest.other"


def _arguments(queue: str) -> dict[str, dict[str, Any]]:
    return {queue: {"x-max-length": 2, "x-overflow": "reject-publish"}}


def _purge() -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        connection.channel().queue_purge(QUEUE)
    finally:
        connection.close()


@pytest.fixture
def publisher(clean_broker: None) -> Iterator[ConfirmingPublisher]:
    instance = ConfirmingPublisher(AMQP_URL, queue_arguments=_arguments, full_pause=PAUSE)
    yield instance
    instance.close()
    _delete(QUEUE, OTHER)


def _delete(*queues: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        for name in queues:
            channel.queue_delete(name)
    finally:
        connection.close()


def _refused(publisher: ConfirmingPublisher) -> str | None:
    try:
        publisher.publish(QUEUE, b"{}")
    except BrokerUnavailable as exc:
        return exc.code
    return None


def test_a_full_queue_refuses_at_once_for_a_moment_then_takes_messages_again(publisher: ConfirmingPublisher) -> None:
    assert [_refused(publisher), _refused(publisher)] == [None, None]
    assert _refused(publisher) == "broker_backpressure"  # the broker's nack
    nacked_at = time.monotonic()
    _purge()  # the queue has room now, but the publisher has not asked again yet
    assert _refused(publisher) == "broker_backpressure"  # answered from memory: the broker has room
    with pytest.raises(BrokerUnavailable):
        publisher.refuse_if_full(QUEUE)  # what callers ask before doing work for a sure refusal
    assert time.monotonic() - nacked_at < PAUSE  # the refusals above were inside the pause
    time.sleep(max(0.0, nacked_at + PAUSE - time.monotonic()))
    publisher.refuse_if_full(QUEUE)
    assert _refused(publisher) is None  # the next publish asks the broker again, and it has room


def test_another_queue_is_not_held_back_by_a_full_one(publisher: ConfirmingPublisher) -> None:
    for _ in range(3):
        _refused(publisher)
    publisher.publish(OTHER, b"{}")  # not full: confirmed


@pytest.fixture
def proxied(clean_broker: None) -> Iterator[tuple[ConfirmingPublisher, FaultProxy]]:
    """A publisher whose connection goes through the fault proxy (the queue has no length limit)."""
    proxy = FaultProxy(int(pika.URLParameters(AMQP_URL).port))
    url = AMQP_URL.replace(":5672/", f":{proxy.port}/")
    instance = ConfirmingPublisher(url, queue_arguments=lambda queue: {queue: {}}, timeout=5.0)
    yield instance, proxy
    proxy.set("pass")
    instance.close()
    proxy.close()
    _delete(OTHER)


def test_a_caller_that_stops_waiting_leaves_a_slow_connection_in_use(
    proxied: tuple[ConfirmingPublisher, FaultProxy],
) -> None:
    publisher, proxy = proxied
    publisher.publish(OTHER, b"{}")  # connected and declared at full speed
    link = publisher._link
    proxy.set("latency", latency_ms=400)  # each way: a confirm comes 0.8 s after its publish
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as refused:
        publisher.publish(OTHER, b"{}", wait=0.2)
    assert 0.2 <= time.monotonic() - started < 0.6 and refused.value.code == "broker_unavailable"
    assert publisher._link is link  # slow, not hung: the connection stays
    publisher.publish(OTHER, b"{}")  # waits the round trip (within its 5 s timeout) on the same link
    assert publisher._link is link
    proxy.set("pass")
    with pytest.raises(BrokerUnavailable):
        publisher.publish(OTHER, b"{}", wait=0)  # no time left: refused without publishing
    assert queue_depth(OTHER) == 3  # the given-up message reached the queue too: its caller must withdraw it


def test_a_connection_owing_a_confirm_past_its_timeout_is_replaced(
    proxied: tuple[ConfirmingPublisher, FaultProxy],
) -> None:
    publisher, proxy = proxied
    publisher.publish(OTHER, b"{}")
    link = publisher._link
    proxy.set("blackhole")  # a partition: no confirm will come
    with pytest.raises(BrokerUnavailable):
        publisher.publish(OTHER, b"{}", timeout=0.6, wait=0.2)
    assert publisher._link is link  # owed for 0.2 s of the 0.6 s it may: kept
    time.sleep(0.5)
    with pytest.raises(BrokerUnavailable):
        publisher.publish(OTHER, b"{}", timeout=0.6, wait=0.2)
    assert publisher._link is not link  # the first confirm is owed past 0.6 s: hung, replaced
    proxy.set("pass")
    time.sleep(RECONNECT_PAUSE)  # publishes fail fast for a moment after a connection is given up
    publisher.publish(OTHER, b"{}")  # then a fresh connection works at once
