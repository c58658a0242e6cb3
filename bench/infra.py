"""RabbitMQ and Redis housekeeping: empty the benchmark's queues and database, count messages.

The benchmark owns the ``offload_bench`` vhost and Redis database 13; it resets both before and
after every measurement so that no run sees another's messages or records.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator

import pika
import pika.exceptions
import redis

from bench.config import BARE_QUEUES, BROKER_URL, OUR_QUEUES, REDIS_PREFIX, REDIS_URL, TENANT


class Rabbit:
    """A short-lived blocking connection to the benchmark's vhost."""

    def __init__(self) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
        self.channel = self.connection.channel()

    def _reopen(self) -> None:
        if not self.connection.is_open:
            self.connection = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
        self.channel = self.connection.channel()

    def delete(self, queues: Iterable[str]) -> None:
        """Delete ``queues`` (missing ones are fine)."""
        for queue in queues:
            try:
                self.channel.queue_delete(queue)
            except pika.exceptions.ChannelClosedByBroker:
                self._reopen()

    def ready(self, queue: str) -> int | None:
        """Messages ready in ``queue`` (not counting those delivered and unacked); None if it does not exist."""
        try:
            frame = self.channel.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            self._reopen()
            return None
        count: int = frame.method.message_count
        return count

    def wait_ready(self, queue: str, count: int, timeout: float) -> int | None:
        """Wait until ``queue`` holds ``count`` ready messages; returns the last count seen."""
        deadline = time.monotonic() + timeout
        seen = self.ready(queue)
        while seen != count and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = self.ready(queue)
        return seen

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(Exception):
            self.connection.close()


@contextlib.contextmanager
def rabbit() -> Iterator[Rabbit]:
    """A :class:`Rabbit` closed on exit."""
    conn = Rabbit()
    try:
        yield conn
    finally:
        conn.close()


def redis_client() -> redis.Redis:
    """A client of the benchmark's Redis database (strings decoded)."""
    return redis.Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=5)


def reset() -> None:
    """Delete every benchmark queue and flush the benchmark's Redis database."""
    with rabbit() as conn:
        conn.delete((*OUR_QUEUES, *BARE_QUEUES))
    client = redis_client()
    try:
        client.flushdb()
    finally:
        client.close()


def state_key(state: str, tenant: str = TENANT) -> str:
    """The status store's per-tenant index of jobs in ``state`` (see ``status/lua/_prelude.lua``)."""
    return f"{REDIS_PREFIX}:idx:{tenant}:s:{state}"


def job_key(job_id: str) -> str:
    """The status store's hash of one job."""
    return f"{REDIS_PREFIX}:job:{job_id}"
