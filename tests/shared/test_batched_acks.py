"""Batched acks against real RabbitMQ: acks in any order from many threads, nacks among them, never a wrong tag."""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.rabbitmq import _RabbitmqConsumer
from dramatiq.common import xq_name

from offload.batched_acks import BatchedAcks
from offload.broker import build_broker, queue_arguments
from offload.testing import wait_for
from tests.support import AMQP_URL, queue_depth


@pytest.fixture
def queue(servers: None) -> Any:
    name = f"acks-{uuid.uuid4().hex[:8]}"
    broker = build_broker(AMQP_URL)
    broker.declare_queue(name)
    yield broker, name
    channel = broker.channel
    for declared in queue_arguments(name):
        channel.queue_delete(declared)
    broker.close()


def _publish(broker: Any, queue: str, n: int) -> None:
    for i in range(n):
        broker.enqueue(dramatiq.Message(queue_name=queue, actor_name="noop", args=(i,), kwargs={}, options={}))


def test_acks_from_many_threads_in_any_order_settle_every_message_in_fewer_frames(queue: Any) -> None:
    broker, name = queue
    n = 400
    _publish(broker, name, n)
    consumer = broker.consume(name, prefetch=64, timeout=100)
    assert isinstance(consumer, _RabbitmqConsumer)
    batched = getattr(consumer.ack, "__self__", None)
    assert isinstance(batched, BatchedAcks)
    received: list[Any] = []
    rejected: set[int] = set()
    lock = threading.Lock()
    pending: list[Any] = []
    done = threading.Event()

    def settle() -> None:  # worker threads: settle what was received, shuffled, some nacked
        rng = random.Random()
        while not done.is_set() or pending:
            with lock:
                if not pending:
                    taken = None
                else:
                    taken = pending.pop(rng.randrange(len(pending)))
            if taken is None:
                done.wait(0.001)
                continue
            if taken.args[0] % 37 == 0:
                rejected.add(taken.args[0])
                consumer.nack(taken)
            else:
                consumer.ack(taken)

    workers = [threading.Thread(target=settle) for _ in range(4)]
    for worker in workers:
        worker.start()
    while len(received) < n:  # the consumer's thread: receive, and run the acks' sends
        message = next(consumer)
        if message is not None:
            received.append(message)
            with lock:
                pending.append(message)
    done.set()
    for worker in workers:
        worker.join(10)
    deadline = time.monotonic() + 10
    while batched.settled < n and time.monotonic() < deadline:
        consumer.connection.sleep(0.01)  # the sends run on the consumer's thread, as in a worker
    assert batched.settled == n
    consumer.close()
    assert queue_depth(name) == 0  # every message settled: none redelivered after the close
    assert queue_depth(xq_name(name)) == len(rejected) == len([i for i in range(n) if i % 37 == 0])
    assert batched.frames < n  # several acks a frame


def test_a_message_neither_acked_nor_nacked_is_redelivered_after_the_close(queue: Any) -> None:
    broker, name = queue
    _publish(broker, name, 20)
    consumer = broker.consume(name, prefetch=20, timeout=100)
    got: list[Any] = []
    while len(got) < 20:
        message = next(consumer)
        if message is not None:
            got.append(message)
    for message in got:
        if message.args[0] != 3:  # one in the middle stays outstanding: the multiple ack stops below it
            consumer.ack(message)
    consumer.connection.sleep(0.2)
    consumer.close()
    wait_for(lambda: queue_depth(name) == 1, timeout=5)
