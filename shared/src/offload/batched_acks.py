"""A worker consumer's acks, sent together on its connection's thread, many in one ``multiple`` ack where exact.

Dramatiq acks each message on its own: a worker thread hands the consumer's connection a callback
(``add_callback_threadsafe``) that sends one ``basic.ack`` and flushes the socket, which costs a
wake-up of the consumer's thread, a poll and a send per message. In a drain of no-op jobs that was
an eighth of a worker's samples, and a frame per message for RabbitMQ to parse.

:class:`BatchedAcks` replaces a consumer's ``ack`` and ``nack``: each queues the message's delivery
tag and, if no send is pending, schedules one. The send runs on the connection's thread and takes
every tag queued by then: nacks first, one by one (they dead-letter); then the acks below the lowest
tag still outstanding (delivered and neither acked nor nacked) go as **one** ``basic.ack`` with
``multiple=True`` of the highest of them, which by AMQP acks exactly those; the acks above it go
one by one. Every ack and nack of the channel passes through here (the consumer's own decode-failure
nack too), so a ``multiple`` ack can never cover a tag another path is about to send: RabbitMQ would
close the channel for an unknown tag, and every unacked message would be redelivered.

A message is still acked only when Dramatiq (or the end writer, through the ack gate) asks for it:
this changes when the frame leaves, never which messages it covers.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pika
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import _RabbitmqConsumer
from dramatiq.errors import ConnectionClosed

logger = logging.getLogger(__name__)


class BatchedAcks:
    """The acks and nacks of one Dramatiq RabbitMQ consumer, sent in batches; install with :meth:`install`."""

    def __init__(self, consumer: _RabbitmqConsumer) -> None:
        self.consumer = consumer
        self._lock = threading.Lock()
        self._acks: list[int] = []
        self._nacks: list[int] = []
        self._scheduled = False
        #: Frames sent (``basic.ack`` and ``basic.nack``) and tags they settled: what the batching saved.
        self.frames = 0
        self.settled = 0

    @classmethod
    def install(cls, consumer: Any) -> BatchedAcks | None:
        """Route ``consumer``'s acks and nacks through a new instance; None for a consumer of another kind."""
        if not isinstance(consumer, _RabbitmqConsumer):
            return None
        batched = cls(consumer)
        consumer.ack = batched.ack  # type: ignore[method-assign]
        consumer.nack = batched.nack  # type: ignore[method-assign]
        consumer._nack = batched.nack_tag  # type: ignore[method-assign]
        return batched

    def ack(self, message: MessageProxy) -> None:
        """Ack ``message`` (Dramatiq's ``Consumer.ack``): queued, sent with the others pending."""
        self._settle(message, self._acks)

    def nack(self, message: MessageProxy) -> None:
        """Reject ``message`` to its dead-letter queue (Dramatiq's ``Consumer.nack``)."""
        self._settle(message, self._nacks)

    def nack_tag(self, tag: int) -> None:
        """Reject a delivery that never became a message (the consumer could not decode it)."""
        self._queue(self._nacks, tag)

    def _settle(self, message: MessageProxy, into: list[int]) -> None:
        self._queue(into, message._tag, message_id=message.message_id)

    def _queue(self, into: list[int], tag: int, *, message_id: str | None = None) -> None:
        # Under the lock, a tag moves from outstanding to queued in one step: the send reads both
        # at once, so its ``multiple`` ack never covers a tag that is in neither.
        with self._lock:
            if message_id is not None:
                try:
                    self.consumer.known_tags.remove(tag)
                except KeyError:
                    logger.warning("Failed to settle message %s: not in known tags.", message_id)
                    return
            into.append(tag)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self.consumer.connection.add_callback_threadsafe(self._send)
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError) as exc:
            with self._lock:
                self._scheduled = False
            raise ConnectionClosed(exc) from None  # type: ignore[no-untyped-call]

    def _send(self) -> None:
        """On the connection's thread: send every queued nack, then the acks (see the module's docstring)."""
        with self._lock:
            acks, self._acks = self._acks, []
            nacks, self._nacks = self._nacks, []
            self._scheduled = False
            # The lowest tag neither sent nor queued: new deliveries get higher tags (and are added on
            # this thread), settled ones leave only under the lock.
            floor = min(self.consumer.known_tags, default=None)
        channel = self.consumer.channel
        for tag in nacks:
            channel.basic_nack(tag, requeue=False)
        self.frames += len(nacks)
        if not acks:
            self.settled += len(nacks)
            return
        below = [tag for tag in acks if floor is None or tag < floor]
        if below:
            channel.basic_ack(max(below), multiple=True)
            self.frames += 1
        for tag in acks:
            if floor is not None and tag > floor:
                channel.basic_ack(tag)
                self.frames += 1
        self.settled += len(nacks) + len(acks)
