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
    """Delete every benchmark queue and flush the benchmark's Redis database.

    The flushed store is marked as of the current layout, as a deployed one is once its first worker
    has booted: otherwise every drain's worker would first run the one-off layout migration over the
    round's 20,000 records (``Janitor.migrate_layout``), an upgrade step, not a cost of a job.
    """
    from offload.status.keys import Keys
    from offload.status.shapes import LAYOUT

    with rabbit() as conn:
        conn.delete((*OUR_QUEUES, *BARE_QUEUES))
    client = redis_client()
    try:
        client.flushdb()
        client.set(Keys(REDIS_PREFIX).layout, LAYOUT)
    finally:
        client.close()


def index_key(state: str, job_type: str, tenant: str = TENANT) -> str:
    """The status store's index of ``tenant``'s jobs of ``job_type`` in ``state`` (``status/lua/_prelude.lua``)."""
    return f"{REDIS_PREFIX}:idx:{tenant}:t:{job_type}:s:{state}"


def count_in(client: redis.Redis, *states: str, tenant: str = TENANT) -> int:
    """How many of ``tenant``'s jobs, of every type, are in one of ``states`` now."""
    types = sorted(client.smembers(f"{REDIS_PREFIX}:types:{tenant}"))
    pipe = client.pipeline(transaction=False)
    for job_type in types:
        for state in states:
            pipe.zcard(index_key(state, str(job_type), tenant))
    return sum(int(count) for count in pipe.execute())


def job_key(job_id: str) -> str:
    """The status store's hash of one job."""
    return f"{REDIS_PREFIX}:job:{job_id}"


def command_stats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """Redis's ``INFO commandstats``: calls and microseconds per command since it started.

    Commands run inside Lua scripts count too (both on their own and inside their ``EVALSHA``).
    The figures are server-wide, so other users of the same Redis show up in them as well.
    """
    raw: dict[str, dict[str, int]] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for name, v in raw.items()}


def per_unit(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], units: int) -> str:
    """Redis commands and server time per unit of work between two :func:`command_stats` snapshots.

    E.g. ``evalsha 2.00× 118 µs, hget 1.00× 2 µs (zadd 6.00×, ... inside scripts)``; commands made
    less than once per 20 units are left out.
    """
    if units <= 0:
        return "n/a"
    rows = []
    for name, (calls, usec) in after.items():
        calls0, usec0 = before.get(name, (0, 0))
        per = (calls - calls0) / units
        if per >= 0.05:
            rows.append((usec - usec0, name, per))
    rows.sort(reverse=True)
    return ", ".join(f"{name} {per:.2f}× {usec / units:.0f} µs" for usec, name, per in rows)
