"""The confirming publisher against a real full queue (``max-length`` with ``reject-publish``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pika
import pytest

from offload.errors import BrokerUnavailable
from offload.publish.amqp import ConfirmingPublisher
from tests.conftest import AMQP_URL

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
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        for name in (QUEUE, OTHER):
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
