"""Dead letters: exported before RabbitMQ drops them (reliability-security.md D8), read for the admin page.

Dramatiq's dead-letter queues (``Q.XQ``) keep a message 7 days (``x-message-ttl``) and then drop
it without a trace. The maintenance job takes the ones older than a threshold (6 days by default)
off each ``Q.XQ``, oldest first, writes them as JSON lines to storage and only then acks them:
a crash between the two leaves them queued, to be exported again (at least once, never lost).
A message younger than the threshold ends the queue's export; closing the channel gives the
unacked ones back.

The admin page and the API read them the same way (:func:`peek`, never acked), and requeue (by
message id: :func:`take_named`), drop or purge them. A letter may be malformed (any service can
publish any bytes to a queue): it is read and shown, dropped by its digest, and never requeued,
nor allowed to stop the others being requeued.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pika
import pika.exceptions
from dramatiq import Message
from dramatiq.common import xq_name
from dramatiq.errors import DecodeError

from offload.broker import blocking_connection
from offload.delivery import forwarded
from offload.storage import Storage

#: The most messages one run exports from one queue (and that a peek or a take reads).
MAX_PER_QUEUE = 20_000
#: Seconds a peek waits for the next letter before it takes the queue for shorter than counted.
PEEK_IDLE = 0.5


@dataclass(frozen=True)
class Exported:
    """What was exported from one dead-letter queue."""

    queue: str
    count: int
    key: str


def dead_at(properties: Any, body: bytes) -> datetime | None:
    """When the message was dead-lettered (``x-death``), else when it was sent (Dramatiq's timestamp)."""
    deaths = (properties.headers or {}).get("x-death") or []
    if deaths and isinstance(deaths[0].get("time"), datetime):
        moment: datetime = deaths[0]["time"]
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        return datetime.fromtimestamp(json.loads(body)["message_timestamp"] / 1000, UTC)
    except (ValueError, KeyError, TypeError):
        return None


def _line(queue: str, properties: Any, body: bytes, died: datetime | None) -> bytes:
    try:
        message: Any = json.loads(body)
    except ValueError:
        message = body.decode("utf-8", "replace")
    record = {
        "queue": queue,
        "dead_lettered_at": died.isoformat() if died else None,
        "reason": ((properties.headers or {}).get("x-death") or [{}])[0].get("reason"),
        "message": message,
    }
    return json.dumps(record, ensure_ascii=False, default=str).encode() + b"\n"


def export(
    broker_url: str,
    queues: list[str],
    storage: Storage,
    key_for: Callable[[str], str],
    *,
    older_than: float,
    now: datetime | None = None,
) -> list[Exported]:
    """Export and remove the dead letters of ``queues`` dead for more than ``older_than`` seconds.

    ``key_for(queue)`` names the storage file of a queue's export; queues with nothing to export
    get no file.

    Raises:
        pika.exceptions.AMQPError: the broker could not be reached (the job retries).
    """
    now = now or datetime.now(UTC)
    results = []
    with blocking_connection(broker_url) as connection:
        for queue in queues:
            channel = connection.channel()
            try:
                channel.queue_declare(xq_name(queue), passive=True)
            except pika.exceptions.ChannelClosedByBroker:  # never declared: no dead letters
                continue
            try:
                exported = _export_queue(channel, queue, storage, key_for(queue), older_than, now)
            finally:
                if channel.is_open:
                    channel.close()  # unacked (too young) messages go back to the queue
            if exported:
                results.append(exported)
    return results


def _export_queue(
    channel: Any, queue: str, storage: Storage, key: str, older_than: float, now: datetime
) -> Exported | None:
    last_tag, lines = 0, list[bytes]()
    while len(lines) < MAX_PER_QUEUE:
        method, properties, body = channel.basic_get(xq_name(queue), auto_ack=False)
        if method is None:
            break
        died = dead_at(properties, body)
        if died is not None and (now - died).total_seconds() < older_than:
            break  # the queue is oldest first: the rest are younger still
        last_tag = method.delivery_tag
        lines.append(_line(queue, properties, body, died))
    if not lines:
        return None
    storage.put(key, lines)  # written whole first: a crash before the ack exports them again
    channel.basic_ack(delivery_tag=last_tag, multiple=True)
    return Exported(queue=queue, count=len(lines), key=key)


@dataclass(frozen=True)
class Letter:
    """One dead letter, read and left in place.

    Any service can publish anything to a queue, and a worker dead-letters what it cannot decode,
    so ``message`` is None for a malformed letter (see :func:`decode`): one that can be shown and
    purged, never requeued.
    """

    body: bytes
    message: Message[Any] | None
    dead_lettered_at: datetime | None
    #: RabbitMQ's reason (``x-death``): ``rejected`` for whatever a worker refused, for any cause.
    broker_reason: str | None

    @property
    def digest(self) -> str:
        """What names this letter's body (identical bodies share it), to purge just this one."""
        return digest(self.body)


@dataclass(frozen=True)
class Peek:
    """The oldest dead letters of a queue, and how many it held."""

    letters: list[Letter]
    depth: int


def decode(body: bytes) -> Message[Any] | None:
    """The Dramatiq message in ``body``, or None if it is malformed.

    Malformed is what Dramatiq cannot decode (not JSON, not an object, fields missing or unknown),
    or a message whose ``message_id``, ``actor_name`` or ``queue_name`` is not a string: nothing
    could name its job, run it or requeue it.
    """
    try:
        message = Message.decode(body)
    except DecodeError:
        return None
    named = (message.message_id, message.actor_name, message.queue_name)
    return message if all(isinstance(part, str) for part in named) else None


def digest(body: bytes) -> str:
    """The SHA-256 of a dead letter's body, in hex."""
    return hashlib.sha256(body).hexdigest()


def peek(broker_url: str, queue: str, *, limit: int = 50) -> Peek:
    """The oldest ``limit`` (at most :data:`MAX_PER_QUEUE`) dead letters of ``queue``, left in place.

    They are consumed unacked, with a prefetch of exactly that many, and given back in their order
    when the connection closes: a page of thousands costs a fraction of a second, where one
    ``basic_get`` each would cost a round trip each.

    Raises:
        pika.exceptions.AMQPError: the broker could not be reached.
    """
    with blocking_connection(broker_url) as connection:
        channel = connection.channel()
        try:
            depth = int(channel.queue_declare(xq_name(queue), passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker:  # never declared: no dead letters
            return Peek([], 0)
        wanted = min(limit, depth, MAX_PER_QUEUE)
        letters: list[Letter] = []
        if wanted:
            channel.basic_qos(prefetch_count=wanted)
            for method, properties, body in channel.consume(xq_name(queue), inactivity_timeout=PEEK_IDLE):
                if method is None:  # fewer than counted: taken meanwhile
                    break
                letters.append(_letter(properties, body))
                if len(letters) >= wanted:
                    break
    return Peek(letters, depth)


def _letter(properties: Any, body: bytes) -> Letter:
    deaths = (properties.headers or {}).get("x-death") or [{}]
    reason = deaths[0].get("reason") if isinstance(deaths[0], dict) else None
    return Letter(
        body=body,
        message=decode(body),
        dead_lettered_at=dead_at(properties, body),
        broker_reason=reason if isinstance(reason, str) else None,
    )


def take_one(broker_url: str, queue: str, message_id: str, handle: Callable[[bytes], None]) -> bool:
    """Take the dead letter of job ``message_id`` off ``queue`` (acked once ``handle`` returned).

    The messages before it are read and given back unacked, in their order, when the channel
    closes. Returns False when no such dead letter is among the first :data:`MAX_PER_QUEUE`.
    """
    return take_named(broker_url, queue, {message_id}, handle) == 1


def take_named(broker_url: str, queue: str, message_ids: set[str], handle: Callable[[bytes], None]) -> int:
    """Take the dead letters of ``message_ids`` off ``queue``, each acked once ``handle`` returned.

    The others read meanwhile are given back unacked, in their order, when the channel closes;
    a message id dead-lettered twice is taken once. Returns how many were taken.
    """
    wanted = set(message_ids)

    def named(body: bytes) -> bool:
        message = decode(body)
        if message is None or message.message_id not in wanted:
            return False
        wanted.discard(message.message_id)
        return True

    return _take(broker_url, queue, handle, limit=len(wanted), match=named)[0]


def drop(broker_url: str, queue: str, body_digest: str) -> bool:
    """Delete the oldest dead letter of ``queue`` whose body has ``body_digest`` (see :func:`digest`).

    The only way to remove one malformed letter, which has no message id to name it by; identical
    bodies are the same letter to whoever reads them, so any one of them will do. Returns False
    when no such letter is among the first :data:`MAX_PER_QUEUE`.
    """
    return _take(broker_url, queue, lambda _: None, limit=1, match=lambda body: digest(body) == body_digest)[0] == 1


def _take(
    broker_url: str,
    queue: str,
    handle: Callable[[bytes], None],
    *,
    limit: int,
    match: Callable[[bytes], bool],
) -> tuple[int, int]:
    """Hand up to ``limit`` dead letters of ``queue`` that ``match`` accepts to ``handle``, acking each after.

    Messages read and not taken stay unacked and go back, in their order, when the connection
    closes. Returns how many were taken and how many were passed over.
    """
    taken = passed = 0
    with blocking_connection(broker_url) as connection:
        try:
            channel = connection.channel()
            for _ in range(MAX_PER_QUEUE):
                if taken >= limit:
                    break
                method, properties, body = channel.basic_get(xq_name(queue), auto_ack=False)
                if method is None:
                    break
                if not match(body):
                    passed += 1
                    continue
                handle(forwarded(body, properties))  # published again, it is still its publisher's
                channel.basic_ack(delivery_tag=method.delivery_tag)
                taken += 1
        except pika.exceptions.ChannelClosedByBroker:  # no such queue
            pass
    return taken, passed


def purge(broker_url: str, queue: str) -> int:
    """Delete every dead letter of ``queue``; returns how many there were."""
    with blocking_connection(broker_url) as connection:
        try:
            return int(connection.channel().queue_purge(xq_name(queue)).method.message_count)
        except pika.exceptions.ChannelClosedByBroker:
            return 0
