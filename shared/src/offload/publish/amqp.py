"""One AMQP connection per process that pipelines publishes and waits for batched confirms.

Dramatiq's ``RabbitmqBroker.enqueue`` with ``confirm_delivery=True`` blocks each caller on its own
publish confirm (~1 ms on loopback, the largest cost of an API request). Here every caller hands
its message to one I/O thread that publishes whatever is waiting, and RabbitMQ acknowledges many
deliveries at once (``multiple=true``). Each caller still returns only after *its* message was
confirmed, so "202 Accepted" keeps meaning "the broker has it on disk".

Failure behaviour (reliability-security.md D1, D2, D10): a refused connection, a hung broker, a
resource alarm (``connection.blocked``) or a nack each end the caller's wait with
:class:`~offload.errors.BrokerUnavailable` within the caller's deadline; the next publish after the
broker returns reconnects, with no restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pika
import pika.channel
import pika.exceptions
import pika.frame
import pika.spec
from pika.adapters.select_connection import SelectConnection

from offload.errors import BrokerUnavailable

logger = logging.getLogger(__name__)

#: Seconds a failed connection attempt makes later publishes fail fast instead of reconnecting.
RECONNECT_PAUSE = 0.25
#: Seconds a nack ("queue full": its ``max-length`` with ``reject-publish``) makes later publishes
#: to that queue fail at once instead of each making a round trip to be refused. Under overload a
#: full queue otherwise costs a publish per refused request, on the cores the workers draining it
#: need (F14: the slowest 503 took 4.3 s); a tenth of a second keeps the refusals cheap and lets
#: the queue take messages again as soon as the workers have made room.
FULL_PAUSE = 0.1


def _not_confirmed() -> BrokerUnavailable:
    return BrokerUnavailable("The message broker did not confirm the message in time.")


def _queue_full() -> BrokerUnavailable:
    return BrokerUnavailable("The message broker rejected the message (queue full).", code="broker_backpressure")


class _Delivery:
    """One message waiting to be published and confirmed."""

    __slots__ = ("body", "done", "error", "headers", "priority", "queue", "since")

    def __init__(
        self, queue: str, body: bytes, priority: int | None, since: float, headers: Mapping[str, str] | None = None
    ) -> None:
        self.queue = queue
        self.body = body
        self.priority = priority
        self.headers = headers
        #: When (monotonic) it was handed to the link: how long the link has owed its confirm.
        self.since = since
        self.done = threading.Event()
        self.error: BrokerUnavailable | None = None

    def settle(self, error: BrokerUnavailable | None = None) -> None:
        if not self.done.is_set():
            self.error = error
            self.done.set()


class _Link:
    """One connection's lifetime: its channel, its delivery tags and its declared queues.

    Everything here runs on the link's I/O thread, except :meth:`submit`, which only appends to
    the outbox and wakes the loop.
    """

    def __init__(
        self,
        parameters: pika.URLParameters,
        queue_arguments: Callable[[str], dict[str, dict[str, Any]]],
        full_pause: float = FULL_PAUSE,
    ) -> None:
        self.parameters = parameters
        self.queue_arguments = queue_arguments
        self.full_pause = full_pause
        self.outbox: deque[_Delivery] = deque()
        self.unconfirmed: dict[int, _Delivery] = {}
        self.declared: set[str] = set()
        self.declaring: set[str] = set()
        #: Queues to declare as soon as the channel is ready (:meth:`ConfirmingPublisher.connect`).
        self.to_declare: set[str] = set()
        #: Until when (monotonic) each queue that nacked a publish is taken as full.
        self.full_until: dict[str, float] = {}
        self.next_tag = 1
        self.ready = threading.Event()
        self.dead = False
        self.blocked = False
        self.wake_pending = False
        self.lock = threading.Lock()
        self.channel: pika.channel.Channel | None = None
        self.connection: SelectConnection | None = None
        self.thread = threading.Thread(target=self._run, name="offload-amqp-publisher", daemon=True)
        self.thread.start()

    # -- called from any thread -------------------------------------------------------------

    def is_full(self, queue: str) -> bool:
        """Whether ``queue`` nacked a publish less than ``full_pause`` seconds ago."""
        return time.monotonic() < self.full_until.get(queue, 0.0)

    def owes_since(self) -> float | None:
        """When (monotonic) the oldest delivery not yet confirmed was handed over (None: none).

        Read from other threads while the I/O thread changes the outbox and the tags; a moment's
        staleness is harmless (it only decides whether a late confirm means a hung connection).
        """
        oldest: float | None = None
        for pending in (self.outbox, self.unconfirmed.values()):
            try:
                first = next(iter(pending))
            except (StopIteration, RuntimeError):  # empty, or changed by the I/O thread meanwhile
                continue
            oldest = first.since if oldest is None else min(oldest, first.since)
        return oldest

    def submit(self, delivery: _Delivery) -> None:
        with self.lock:
            if self.dead:
                delivery.settle(BrokerUnavailable("The message broker connection was lost."))
                return
            if self.blocked:
                delivery.settle(
                    BrokerUnavailable(
                        "The message broker is refusing messages (resource alarm).", code="broker_backpressure"
                    )
                )
                return
            if self.is_full(delivery.queue):
                delivery.settle(_queue_full())
                return
            self.outbox.append(delivery)
            if not self.ready.is_set() or self.wake_pending:
                return
            self.wake_pending = True
            connection = self.connection
        try:
            assert connection is not None
            connection.ioloop.add_callback_threadsafe(self._flush)
        except Exception:  # the loop is closing; its close handler settles the outbox
            logger.debug("Publisher loop is closing; delivery left to the close handler.")

    def close(self) -> None:
        connection = self.connection
        if connection is not None and not self.dead:
            try:
                connection.ioloop.add_callback_threadsafe(self._close_now)
            except Exception:
                logger.debug("Publisher loop already stopped.")

    # -- the I/O thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self.connection = SelectConnection(
                self.parameters,
                on_open_callback=self._on_open,
                on_open_error_callback=self._on_open_error,
                on_close_callback=self._on_closed,
            )
            self.connection.add_on_connection_blocked_callback(self._on_blocked)
            self.connection.add_on_connection_unblocked_callback(self._on_unblocked)
            self.connection.ioloop.start()
        except Exception:
            logger.exception("The publisher's connection loop failed.")
        finally:
            self._die("The message broker connection was lost.")
            if self.connection is not None:
                self.connection.ioloop.close()

    def _on_open(self, connection: SelectConnection) -> None:
        connection.channel(on_open_callback=self._on_channel)

    def _on_channel(self, channel: pika.channel.Channel) -> None:
        self.channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_confirm_mode)

    def _on_confirm_mode(self, _frame: pika.frame.Method) -> None:
        with self.lock:
            self.ready.set()
            self.wake_pending = True
        self._declare_ahead()
        self._flush()

    def declare_ahead(self, queues: Iterable[str]) -> None:
        """Declare ``queues`` as soon as the channel is ready (now, if it is), not on first use."""
        with self.lock:
            self.to_declare.update(queues)
            connection = self.connection if self.ready.is_set() and not self.dead else None
        if connection is not None:
            try:
                connection.ioloop.add_callback_threadsafe(self._declare_ahead)
            except Exception:  # closing: the next link declares on first use
                logger.debug("Publisher loop is closing; queues left to declare on first use.")

    def _declare_ahead(self) -> None:
        with self.lock:
            queues, self.to_declare = self.to_declare, set()
        for queue in sorted(queues - self.declared):
            self._declare(queue)

    def _flush(self) -> None:
        with self.lock:
            self.wake_pending = False
            batch = list(self.outbox)
            self.outbox.clear()
        channel = self.channel
        if channel is None or not channel.is_open:
            for delivery in batch:
                delivery.settle(BrokerUnavailable("The message broker channel is closed."))
            return
        waiting: list[_Delivery] = []
        for delivery in batch:
            if delivery.done.is_set():  # its caller gave up already
                continue
            if delivery.queue not in self.declared:
                waiting.append(delivery)
                self._declare(delivery.queue)
                continue
            self._publish(channel, delivery)
        if waiting:
            with self.lock:
                self.outbox.extendleft(reversed(waiting))

    def _publish(self, channel: pika.channel.Channel, delivery: _Delivery) -> None:
        tag = self.next_tag
        self.next_tag += 1
        self.unconfirmed[tag] = delivery
        channel.basic_publish(
            exchange="",
            routing_key=delivery.queue,
            body=delivery.body,
            properties=pika.BasicProperties(
                delivery_mode=2,
                priority=delivery.priority,
                correlation_id=str(tag),
                user_id=self.parameters.credentials.username,  # who publishes: Offload itself (wire-format.md)
                headers=dict(delivery.headers) if delivery.headers else None,
            ),
            mandatory=True,
        )

    def _declare(self, queue: str) -> None:
        if queue in self.declaring or self.channel is None:
            return
        self.declaring.add(queue)
        names = list(self.queue_arguments(queue).items())
        channel = self.channel

        def declare_next(_frame: Any = None) -> None:
            if not names:
                self.declaring.discard(queue)
                self.declared.add(queue)
                self._flush()
                return
            name, arguments = names.pop(0)
            channel.queue_declare(queue=name, durable=True, arguments=arguments, callback=declare_next)

        declare_next()

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        tag = method.delivery_tag
        nacked = isinstance(method, pika.spec.Basic.Nack)
        if getattr(method, "multiple", False):
            settled = [self.unconfirmed.pop(t) for t in [t for t in self.unconfirmed if t <= tag]]
        else:
            delivery = self.unconfirmed.pop(tag, None)
            settled = [delivery] if delivery is not None else []
        if nacked:
            full_until = time.monotonic() + self.full_pause
            for delivery in settled:
                self.full_until[delivery.queue] = full_until
        for delivery in settled:
            delivery.settle(_queue_full() if nacked else None)

    def _on_return(self, _channel: Any, _method: Any, properties: pika.spec.BasicProperties, _body: bytes) -> None:
        delivery = self.unconfirmed.pop(int(properties.correlation_id or 0), None)
        if delivery is not None:
            self.declared.discard(delivery.queue)
            delivery.settle(BrokerUnavailable("The message could not be routed to its queue."))

    def _on_blocked(self, _connection: Any, _frame: Any) -> None:
        logger.warning("RabbitMQ blocked publishing (resource alarm); failing publishes until it unblocks.")
        with self.lock:
            self.blocked = True
        error = BrokerUnavailable(
            "The message broker is refusing messages (resource alarm).", code="broker_backpressure"
        )
        self._settle_all(error)

    def _on_unblocked(self, _connection: Any, _frame: Any) -> None:
        logger.info("RabbitMQ unblocked publishing.")
        with self.lock:
            self.blocked = False

    def _on_channel_closed(self, _channel: Any, reason: Exception) -> None:
        logger.warning("Publisher channel closed: %s", reason)
        connection = self.connection
        if connection is not None and connection.is_open:
            connection.close()

    def _on_open_error(self, _connection: Any, error: BaseException | str) -> None:
        logger.warning("Could not connect to the message broker: %s", error)
        self._stop_loop()

    def _on_closed(self, _connection: Any, reason: BaseException) -> None:
        logger.info("Publisher connection closed: %s", reason)
        self._stop_loop()

    def _close_now(self) -> None:
        if self.connection is not None and self.connection.is_open:
            self.connection.close()
        else:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._die("The message broker connection was lost.")
        if self.connection is not None:
            self.connection.ioloop.stop()

    def _die(self, reason: str) -> None:
        with self.lock:
            self.dead = True
            self.ready.set()
        self._settle_all(BrokerUnavailable(reason))

    def _settle_all(self, error: BrokerUnavailable) -> None:
        with self.lock:
            pending = list(self.outbox)
            self.outbox.clear()
        pending.extend(self.unconfirmed.values())
        self.unconfirmed.clear()
        for delivery in pending:
            delivery.settle(error)


class ConfirmingPublisher:
    """Publish messages to RabbitMQ and wait for the broker's confirm, within a deadline.

    Thread-safe and gevent-friendly; one instance per process is enough. The connection opens on
    first use and again after any failure.

    Args:
        url: the AMQP URL.
        queue_arguments: ``queue -> {name: arguments}`` for the queues to declare before the first
            publish to ``queue`` (the queue itself, its delay and dead-letter queues).
        timeout: default seconds to wait for a confirm.
        full_pause: seconds a nacked queue is taken as full (:data:`FULL_PAUSE`).
    """

    def __init__(
        self,
        url: str,
        *,
        queue_arguments: Callable[[str], dict[str, dict[str, Any]]],
        timeout: float = 2.0,
        heartbeat: int = 30,
        full_pause: float = FULL_PAUSE,
    ) -> None:
        self.parameters = pika.URLParameters(url)
        self.parameters.socket_timeout = timeout
        self.parameters.stack_timeout = timeout
        self.parameters.blocked_connection_timeout = 30
        self.parameters.heartbeat = heartbeat
        self.parameters.connection_attempts = 1
        self.queue_arguments = queue_arguments
        self.full_pause = full_pause
        self.timeout = timeout
        self._lock = threading.Lock()
        self._link: _Link | None = None
        self._failed_at = 0.0

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
        """Publish one persistent message (with AMQP ``headers``, if any) and return once RabbitMQ confirmed it.

        ``timeout`` is how long the connection may owe a confirm before it counts as hung and is
        replaced; ``wait`` (at most ``timeout``) is how long this caller waits for its own. A
        caller that gives up sooner leaves the connection alone: a broker that confirms in 1.2 s
        is slow, not gone, and the confirm, when it comes, changes nothing. With no time left
        (``wait`` ≤ 0) the message is not published at all.

        Raises:
            BrokerUnavailable: refused, not confirmed within ``wait``, rejected, or blocked.
        """
        errors = self.publish_many([(queue, body, priority)], timeout=timeout, wait=wait, headers=[headers])
        if errors[0] is not None:
            raise errors[0]

    def publish_many(
        self,
        messages: list[tuple[str, bytes, int | None]],
        *,
        timeout: float | None = None,
        wait: float | None = None,
        headers: Sequence[Mapping[str, str] | None] | None = None,
    ) -> list[BrokerUnavailable | None]:
        """Publish several messages in one go; returns one error (or None) per message, in order.

        ``timeout`` and ``wait`` as in :meth:`publish`; ``headers``, each message's AMQP headers.
        """
        started = time.monotonic()
        timeout = timeout if timeout is not None else self.timeout
        deadline = started + (min(wait, timeout) if wait is not None else timeout)
        deliveries = [
            _Delivery(queue, body, priority, started, headers[index] if headers is not None else None)
            for index, (queue, body, priority) in enumerate(messages)
        ]
        link = self._live_link()
        for delivery in deliveries:
            if link is None:
                delivery.settle(BrokerUnavailable("The message broker is unavailable."))
            elif deadline <= started:  # the caller's time is up already: not published at all
                delivery.settle(_not_confirmed())
            else:
                link.submit(delivery)
        unconfirmed = False
        for delivery in deliveries:
            if not delivery.done.wait(max(0.0, deadline - time.monotonic())):
                delivery.settle(_not_confirmed())
                unconfirmed = True
        if link is not None and unconfirmed and self._overdue(link, timeout):
            self._retire(link)
        elif link is not None and link.dead and any(d.error is not None for d in deliveries):
            self._failed_at = time.monotonic()
        return [d.error for d in deliveries]

    @staticmethod
    def _overdue(link: _Link, timeout: float) -> bool:
        """Whether ``link`` has owed a confirm for ``timeout`` seconds or more."""
        since = link.owes_since()
        return since is not None and time.monotonic() - since >= timeout

    def _retire(self, link: _Link) -> None:
        """Stop using a link that let a confirm deadline pass, and close it.

        Silence past the deadline means a hung broker or a partition; the link's socket may stay
        silent until the heartbeat gives up (30 s), and after a partition heals TCP's retransmission
        backoff can delay it further. A fresh connection either fails fast (the broker is still
        away) or works at once (it is back), so the first 202 follows the recovery within a
        publish, not within a heartbeat.
        """
        with self._lock:
            if self._link is link:
                self._link = None
                self._failed_at = time.monotonic()
        logger.warning("A publish was not confirmed in time; reconnecting to the message broker.")
        link.close()

    def refuse_if_full(self, queue: str) -> None:
        """Fail at once if ``queue`` refused a publish less than :data:`FULL_PAUSE` ago.

        Lets a caller skip the work it would do before publishing (the API records a job in Redis
        first) when the publish is sure to be refused.

        Raises:
            BrokerUnavailable: ``broker_backpressure``, the queue is full.
        """
        link = self._link
        if link is not None and link.is_full(queue):
            raise _queue_full()

    def connect(self, queues: Iterable[str] = ()) -> None:
        """Open the connection now, in the background, and declare ``queues`` on it; return at once.

        Without it the connection opens on the first publish, whose caller then waits through the
        TCP and AMQP handshakes and each queue's declarations. An API process calls this when it
        starts, so that no submission spends its answer deadline connecting. A failure here is
        only logged: the next publish tries again.
        """
        link = self._live_link()
        if link is not None:
            link.declare_ahead(queues)

    def _live_link(self) -> _Link | None:
        with self._lock:
            link = self._link
            if link is not None and not link.dead:
                return link
            if time.monotonic() - self._failed_at < RECONNECT_PAUSE:
                return None
            self._link = _Link(self.parameters, self.queue_arguments, self.full_pause)
            return self._link

    def close(self) -> None:
        """Close the connection (messages still waiting fail with :class:`BrokerUnavailable`)."""
        with self._lock:
            link, self._link = self._link, None
        if link is not None:
            link.close()
            link.thread.join(timeout=2)
