"""How a publisher hands messages to a broker: the :class:`Transport` protocol, and one in memory.

Production uses :class:`~offload.publish.amqp.ConfirmingPublisher` (RabbitMQ with publisher
confirms). :class:`MemoryTransport` keeps messages in lists, so tests of pure submission logic
(validation, quotas, idempotency, withdrawal on a refused publish) need no broker; the same
paths are also tested against RabbitMQ.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from offload.errors import BrokerUnavailable


def _queue_full() -> BrokerUnavailable:
    return BrokerUnavailable("The message broker rejected the message (queue full).", code="broker_backpressure")


class Transport(Protocol):
    """What the submit sequence needs of a broker: publish with confirms, refuse a full queue early."""

    def connect(self, queues: Iterable[str] = ()) -> None:
        """Open the connection ahead of the first publish and declare ``queues`` on it."""

    def publish(
        self,
        queue: str,
        body: bytes,
        *,
        priority: int | None = None,
        timeout: float | None = None,
        wait: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Publish one persistent message (with AMQP ``headers``, if any); return once the broker confirmed it.

        Raises:
            BrokerUnavailable: refused, not confirmed in time, or the broker is unreachable.
        """

    def publish_many(
        self,
        messages: list[tuple[str, bytes, int | None]],
        *,
        timeout: float | None = None,
        wait: float | None = None,
        headers: Sequence[Mapping[str, str] | None] | None = None,
    ) -> list[BrokerUnavailable | None]:
        """Publish several messages with one round of confirms; per message, None or its error.

        ``headers``: each message's AMQP headers (None: none), in the same order.
        """

    def refuse_if_full(self, queue: str) -> None:
        """Raise at once if the broker is known to refuse ``queue`` now (its length limit).

        Raises:
            BrokerUnavailable: the queue is full.
        """

    def close(self) -> None:
        """Close the connection; messages still waiting fail with :class:`BrokerUnavailable`."""


class MemoryTransport:
    """A broker in memory: each published message is appended to its queue's list.

    ``refusing`` names queues whose messages are refused (as a full queue's are), and ``down``
    makes every publish fail as an unreachable broker's does.
    """

    def __init__(self) -> None:
        self.queues: defaultdict[str, list[tuple[bytes, int | None]]] = defaultdict(list)
        self.refusing: set[str] = set()
        self.down = False
        self.declared: set[str] = set()
        #: The AMQP headers each message was published with, by body (what a test reads back).
        self.headers: dict[bytes, Mapping[str, str]] = {}
        self._lock = threading.Lock()

    def connect(self, queues: Iterable[str] = ()) -> None:
        """Note ``queues`` as declared."""
        self.declared.update(queues)

    def publish(
        self,
        queue: str,
        body: bytes,
        *,
        priority: int | None = None,
        timeout: float | None = None,
        wait: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Append the message to its queue.

        Raises:
            BrokerUnavailable: the queue is refusing, or the transport is down.
        """
        error = self.publish_many([(queue, body, priority)], timeout=timeout, wait=wait, headers=[headers])[0]
        if error is not None:
            raise error

    def publish_many(
        self,
        messages: list[tuple[str, bytes, int | None]],
        *,
        timeout: float | None = None,
        wait: float | None = None,
        headers: Sequence[Mapping[str, str] | None] | None = None,
    ) -> list[BrokerUnavailable | None]:
        """Append each message to its queue, or give the error a broker would (at once: nothing waits)."""
        del timeout, wait
        errors: list[BrokerUnavailable | None] = []
        with self._lock:
            for index, (queue, body, priority) in enumerate(messages):
                if headers is not None and headers[index]:
                    self.headers[body] = dict(headers[index] or {})
                if self.down:
                    errors.append(BrokerUnavailable("The message broker is unavailable."))
                elif queue in self.refusing:
                    errors.append(_queue_full())
                else:
                    self.queues[queue].append((body, priority))
                    self.declared.add(queue)
                    errors.append(None)
        return errors

    def refuse_if_full(self, queue: str) -> None:
        """Raise if ``queue`` is refusing.

        Raises:
            BrokerUnavailable: it is.
        """
        if queue in self.refusing:
            raise _queue_full()

    def close(self) -> None:
        """Nothing to close."""
