"""RabbitMQ as Offload uses it: Dramatiq's broker for workers, the same queue shape for publishers.

Every queue ``Q`` comes with ``Q.DQ`` (Dramatiq's delay queue) and ``Q.XQ`` (dead letters, kept
7 days), declared durable with ``x-max-priority`` so that priorities work. Publishers and workers
must declare them with identical arguments or RabbitMQ refuses the second declaration
(dramatiq#301), so both take them from :func:`queue_arguments`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dramatiq
import pika
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import dq_name, xq_name
from dramatiq.encoder import JSONEncoder
from dramatiq.middleware import Middleware, MiddlewareError

from offload.batched_acks import BatchedAcks
from offload.contracts import MAX_BROKER_PRIORITY
from offload.delivery import StampingConsumer
from offload.errors import ConfigError

#: pika connection parameters that bound how long a hung or blocked broker can hold a caller
#: (reliability-security.md D2: defaults measured 15 s for a hung broker and forever in an alarm).
TIMEOUT_PARAMETERS = {
    "socket_timeout": "2",
    "stack_timeout": "2",
    "blocked_connection_timeout": "2",
    "connection_attempts": "1",
    "heartbeat": "30",
}


def queue_arguments(queue: str) -> dict[str, dict[str, Any]]:
    """The three queues behind ``queue`` and their declare arguments, exactly as Dramatiq declares them."""
    main = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": xq_name(queue),
        "x-max-priority": MAX_BROKER_PRIORITY,
    }
    return {queue: main, dq_name(queue): dict(main), xq_name(queue): {"x-message-ttl": DEAD_MESSAGE_TTL}}


def with_timeouts(url: str) -> str:
    """``url`` with the timeout parameters added, keeping any the operator set explicitly."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for name, value in TIMEOUT_PARAMETERS.items():
        query.setdefault(name, value)
    return urlunsplit(parts._replace(query=urlencode(query)))


@contextmanager
def blocking_connection(url: str) -> Iterator[pika.BlockingConnection]:
    """A short-lived blocking connection (with :data:`TIMEOUT_PARAMETERS`), closed when the block ends.

    For occasional reads and operations (queue depths, dead letters); closing it gives back every
    message taken and not acked.

    Raises:
        pika.exceptions.AMQPError: the broker could not be reached.
    """
    connection = pika.BlockingConnection(pika.URLParameters(with_timeouts(url)))
    try:
        yield connection
    finally:
        connection.close()


def require_json_encoder() -> None:
    """Refuse to run with any encoder but JSON (pickle would run code from the queue; D7).

    Raises:
        ConfigError: another encoder is installed.
    """
    encoder = dramatiq.get_encoder()
    if type(encoder) is not JSONEncoder:
        raise ConfigError(f"Dramatiq's encoder is {type(encoder).__name__}; Offload only runs with JSONEncoder.")


#: Asked before a message is acked, with its id and its ack: True if it took the ack to run later.
AckGate = Callable[[str, Callable[[], None]], bool]


class WorkerBroker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker as Offload's workers run it: acks gated, hooks sent only where defined.

    - Its consumers send their acks in batches, on the consumer's thread (``offload.batched_acks``),
      and ask :attr:`ack_gate` before acking a message: the worker's end writer
      (``offload.worker.end_writer``) takes the ack of a job whose end it has not written yet and
      runs it once the end is in Redis; every other ack goes ahead at once.
    - A signal (``before_process_message``, ``after_ack``, ...) goes only to the middleware whose
      class defines that hook, in Dramatiq's order and with its error handling: Dramatiq calls every
      middleware's hook, most of them the base class's no-op, four signals a message times a dozen
      middleware (8 % of a worker's Python time in a drain of no-op jobs).
    """

    ack_gate: AckGate | None = None
    #: Broker users whose re-publications keep a message's first publisher (``offload.delivery``).
    trusted_users: frozenset[str] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._hooked: dict[str, list[Middleware]] = {}
        super().__init__(*args, **kwargs)
        credentials = getattr(self.parameters, "credentials", None)
        self._login: str | None = getattr(credentials, "username", None)

    @property
    def consumer_class(self) -> type[StampingConsumer]:
        """Consumers that stamp each message with its delivery's ``user_id`` and headers (``offload.delivery``)."""
        return StampingConsumer

    @property
    def channel(self) -> Any:
        """Dramatiq's channel of this thread, publishing with ``user_id`` = this broker's login.

        What this broker publishes again (Dramatiq's retries and delays) says it is Offload's own:
        a message without a ``user_id`` is refused (``docs/wire-format.md``).
        """
        return _SignedChannel(RabbitmqBroker.channel.fget(self), self._login)  # type: ignore[attr-defined]

    @channel.deleter
    def channel(self) -> None:
        RabbitmqBroker.channel.fdel(self)  # type: ignore[attr-defined]

    def add_middleware(self, middleware: Middleware, **where: Any) -> None:
        """Dramatiq's, forgetting which middleware define which hooks."""
        self._hooked = {}
        super().add_middleware(middleware, **where)

    def emit_before(self, signal: str, *args: Any, **kwargs: Any) -> None:
        """Dramatiq's ``emit_before``, calling only the middleware that define the hook."""
        name = "before_" + signal
        for middleware in self._hooks(name):
            try:
                getattr(middleware, name)(self, *args, **kwargs)
            except MiddlewareError:
                raise
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", name, middleware, exc_info=True)

    def emit_after(self, signal: str, *args: Any, **kwargs: Any) -> None:
        """Dramatiq's ``emit_after`` (last middleware first), calling only the middleware that define the hook."""
        name = "after_" + signal
        for middleware in reversed(self._hooks(name)):
            try:
                getattr(middleware, name)(self, *args, **kwargs)
            except Exception:
                self.logger.critical("Unexpected failure in %s of %r.", name, middleware, exc_info=True)

    def _hooks(self, name: str) -> list[Middleware]:
        found = self._hooked.get(name)
        if found is None:
            base = getattr(Middleware, name, None)
            found = [
                m
                for m in self.middleware
                if getattr(type(m), name, None) not in (None, base) or name in getattr(m, "__dict__", {})
            ]
            self._hooked[name] = found
        return found

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Consumer:
        """Dramatiq's consumer for ``queue_name``: acks sent in batches, gated by :attr:`ack_gate` when one is set."""
        consumer = super().consume(queue_name, prefetch, timeout)
        BatchedAcks.install(consumer)
        gate = self.ack_gate
        if gate is None:
            return consumer
        plain_ack = consumer.ack

        def ack(message: MessageProxy) -> None:
            if not gate(message.message_id, lambda: plain_ack(message)):
                plain_ack(message)

        setattr(consumer, "ack", ack)  # noqa: B010 - the one method replaced on this instance
        return consumer


class _SignedChannel:
    """A pika channel whose ``basic_publish`` sets ``user_id`` to the connection's login."""

    def __init__(self, channel: Any, login: str | None) -> None:
        self._channel = channel
        self._login = login

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties: Any = None, **kw: Any) -> Any:
        properties = properties or pika.BasicProperties()
        properties.user_id = self._login
        return self._channel.basic_publish(exchange, routing_key, body, properties, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)


def build_broker(
    url: str, *, middleware: list[Middleware] | None = None, trusted_users: frozenset[str] = frozenset()
) -> WorkerBroker:
    """The worker's Dramatiq broker: confirms on, bounded timeouts, priorities, JSON only.

    ``trusted_users`` are Offload's own broker users (``offload.wire_access``).

    Raises:
        ConfigError: the encoder is not JSON.
    """
    require_json_encoder()
    broker = WorkerBroker(
        url=with_timeouts(url),
        confirm_delivery=True,
        max_priority=MAX_BROKER_PRIORITY,
        middleware=middleware,
    )
    broker.trusted_users = trusted_users
    return broker
