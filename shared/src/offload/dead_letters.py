"""Exporting dead letters before RabbitMQ drops them (reliability-security.md D8).

Dramatiq's dead-letter queues (``Q.XQ``) keep a message 7 days (``x-message-ttl``) and then drop
it without a trace. The maintenance job takes the ones older than a threshold (6 days by default)
off each ``Q.XQ``, oldest first, writes them as JSON lines to storage and only then acks them:
a crash between the two leaves them queued, to be exported again (at least once, never lost).
A message younger than the threshold ends the queue's export; closing the channel gives the
unacked ones back.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pika
import pika.exceptions
from dramatiq.common import xq_name

from offload.broker import blocking_connection
from offload.storage import Storage

#: The most messages one run exports from one queue.
MAX_PER_QUEUE = 20_000


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


def peek(broker_url: str, queue: str, *, limit: int = 50) -> list[dict[str, Any]]:
    """The oldest ``limit`` dead letters of ``queue``, decoded, left in place (the channel closes unacked)."""
    found = []
    with blocking_connection(broker_url) as connection:
        try:
            channel = connection.channel()
            for _ in range(limit):
                method, properties, body = channel.basic_get(xq_name(queue), auto_ack=False)
                if method is None:
                    break
                found.append(json.loads(_line(queue, properties, body, dead_at(properties, body))))
        except pika.exceptions.ChannelClosedByBroker:  # no such queue
            return []
    return found


def take(broker_url: str, queue: str, handle: Callable[[bytes], None], *, limit: int = MAX_PER_QUEUE) -> int:
    """Take up to ``limit`` dead letters off ``queue``, one at a time; returns how many were taken.

    Each is acked once ``handle`` (given the message body) returned, and left queued if it raised.
    """
    return _take(broker_url, queue, handle, limit=limit)


def take_one(broker_url: str, queue: str, message_id: str, handle: Callable[[bytes], None]) -> bool:
    """Take the dead letter of job ``message_id`` off ``queue`` (acked once ``handle`` returned).

    The messages before it are read and given back unacked, in their order, when the channel
    closes. Returns False when no such dead letter is among the first :data:`MAX_PER_QUEUE`.
    """
    return _take(broker_url, queue, handle, limit=1, match=lambda body: _message_id(body) == message_id) == 1


def _message_id(body: bytes) -> str | None:
    try:
        found = json.loads(body).get("message_id")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def _take(
    broker_url: str,
    queue: str,
    handle: Callable[[bytes], None],
    *,
    limit: int,
    match: Callable[[bytes], bool] | None = None,
) -> int:
    """Hand up to ``limit`` dead letters of ``queue`` (those ``match`` accepts) to ``handle``, acking each after.

    Messages read and not taken stay unacked and go back, in their order, when the connection closes.
    """
    taken = 0
    with blocking_connection(broker_url) as connection:
        try:
            channel = connection.channel()
            for _ in range(MAX_PER_QUEUE):
                if taken >= limit:
                    break
                method, _properties, body = channel.basic_get(xq_name(queue), auto_ack=False)
                if method is None:
                    break
                if match is not None and not match(body):
                    continue
                handle(body)
                channel.basic_ack(delivery_tag=method.delivery_tag)
                taken += 1
        except pika.exceptions.ChannelClosedByBroker:  # no such queue
            pass
    return taken


def purge(broker_url: str, queue: str) -> int:
    """Delete every dead letter of ``queue``; returns how many there were."""
    with blocking_connection(broker_url) as connection:
        try:
            return int(connection.channel().queue_purge(xq_name(queue)).method.message_count)
        except pika.exceptions.ChannelClosedByBroker:
            return 0
