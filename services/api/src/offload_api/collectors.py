"""Gauges read at scrape time: queue depths from RabbitMQ and job counts by state from Redis.

Both are read by whichever API process answers ``/metrics``, at most every few seconds (the last
reading is cached), so a scrape costs one passive declare per queue and one Redis round trip. With
RabbitMQ's management or Prometheus plugin enabled, its own exporter adds the unacked counts and
broker internals; a passive declare tells only the messages ready and the consumers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
from dramatiq.common import dq_name, xq_name
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from offload.broker import blocking_connection
from offload.contracts import Registry
from offload.errors import DependencyError
from offload.scheduler import schedule_status
from offload.status import StatusStore, redis_errors
from offload.status.pauses import Pauses
from offload.status.stats import state_counts

logger = logging.getLogger(__name__)

#: Seconds a reading is reused before the broker and Redis are asked again.
CACHE_SECONDS = 5.0


class _Cached(Collector):
    """A collector whose reading is taken at most every :data:`CACHE_SECONDS` (one process, any thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cached: tuple[float, list[Metric]] = (0.0, [])

    def collect(self) -> Iterator[Metric]:
        """The latest reading (taken now if the cached one is too old)."""
        with self.lock:
            taken, families = self.cached
            if time.monotonic() - taken > CACHE_SECONDS:
                try:
                    with redis_errors():
                        families = self._read()
                except DependencyError as exc:  # the scrape still answers, without these series
                    logger.warning("%s: Redis unavailable (%s).", type(self).__name__, type(exc).__name__)
                    families = []
                self.cached = (time.monotonic(), families)
        yield from families

    def _read(self) -> list[Metric]:
        raise NotImplementedError


class QueueCollector(_Cached):
    """``offload_queue_messages{queue, kind}`` (ready, delayed, dead) and ``offload_queue_consumers{queue}``."""

    def __init__(self, broker_url: str, registry: Registry) -> None:
        super().__init__()
        self.broker_url = broker_url
        self.registry = registry

    def _read(self) -> list[Metric]:
        messages = GaugeMetricFamily(
            "offload_queue_messages",
            "Messages in a queue: ready, delayed (DQ) or dead-lettered (XQ).",
            labels=["queue", "kind"],
        )
        consumers = GaugeMetricFamily("offload_queue_consumers", "Consumers of a queue.", labels=["queue"])
        up = GaugeMetricFamily("offload_broker_up", "1 when the last reading of the broker worked.")
        depths = read_queues(self.broker_url, self.registry.queues)
        up.add_metric([], 0 if depths is None else 1)
        for depth in depths or []:
            for kind in ("ready", "delayed", "dead"):
                messages.add_metric([depth.queue, kind], getattr(depth, kind))
            consumers.add_metric([depth.queue], depth.consumers)
        return [messages, consumers, up] if depths is not None else [up]


@dataclass(frozen=True)
class QueueDepth:
    """One queue's messages (ready, in its delay queue, dead-lettered) and consumers."""

    queue: str
    ready: int
    delayed: int
    dead: int
    consumers: int


def read_queues(broker_url: str, queues: list[str]) -> list[QueueDepth] | None:
    """Each declared queue's depth by passive declares on one connection; None if RabbitMQ is unreachable."""
    depths = []
    try:
        with blocking_connection(broker_url) as connection:
            for queue in queues:
                main = _declare(connection, queue)
                if main is None:
                    continue
                delayed, dead = _declare(connection, dq_name(queue)), _declare(connection, xq_name(queue))
                depths.append(
                    QueueDepth(
                        queue=queue,
                        ready=main.method.message_count,
                        delayed=delayed.method.message_count if delayed else 0,
                        dead=dead.method.message_count if dead else 0,
                        consumers=main.method.consumer_count,
                    )
                )
    except pika.exceptions.AMQPError as exc:
        logger.warning("Queue depths: RabbitMQ unreachable (%s).", type(exc).__name__)
        return None
    return depths


def _declare(connection: Any, name: str) -> Any:
    channel = connection.channel()
    try:
        return channel.queue_declare(name, passive=True)
    except pika.exceptions.ChannelClosedByBroker:  # not declared yet: nothing to report
        return None
    finally:
        if channel.is_open:
            channel.close()


class JobStateCollector(_Cached):
    """``offload_jobs{state}``: jobs in each state now (records still kept), from the status store's indexes."""

    def __init__(self, store: StatusStore) -> None:
        super().__init__()
        self.store = store

    def _read(self) -> list[Metric]:
        family = GaugeMetricFamily(
            "offload_jobs", "Jobs by state (finished ones until their retention ends).", labels=["state"]
        )
        for state, count in state_counts(self.store).items():
            family.add_metric([state], count)
        return [family]


class PauseCollector(_Cached):
    """``offload_paused{target}`` and ``offload_parked_jobs{target}``, for every queue and paused type.

    ``offload_paused`` is 1 while the queue or job type is paused; ``offload_parked_jobs`` counts
    the jobs received meanwhile, waiting for the resume.
    """

    def __init__(self, pauses: Pauses, registry: Registry) -> None:
        super().__init__()
        self.pauses = pauses
        self.registry = registry

    def _read(self) -> list[Metric]:
        paused = GaugeMetricFamily(
            "offload_paused", "1 when a queue or job type is paused (queues are always listed).", labels=["target"]
        )
        parked = GaugeMetricFamily(
            "offload_parked_jobs", "Jobs parked while their queue or job type was paused.", labels=["target"]
        )
        now = self.pauses.paused()
        for target in sorted({*self.registry.queues, *now}):
            paused.add_metric([target], 1 if target in now else 0)
            parked.add_metric([target], self.pauses.parked_count(target))
        return [paused, parked]


class ScheduleCollector(_Cached):
    """``offload_cron_ticks_missed_total{schedule}``: ticks of each schedule that no scheduler ran.

    A scheduler that was down past several ticks runs only the latest (no catch-up storm); the
    others are counted in Redis, so none is silent (reliability-security.md F19), and this counter
    makes them alertable (``OffloadCronTicksMissed``).
    """

    def __init__(self, store: StatusStore, tz: str) -> None:
        super().__init__()
        self.store = store
        self.tz = tz

    def _read(self) -> list[Metric]:
        missed = CounterMetricFamily(
            "offload_cron_ticks_missed",
            "Ticks of a schedule missed while no scheduler ran (only the latest was run).",
            labels=["schedule"],
        )
        for row in schedule_status(self.store, tz=self.tz):
            missed.add_metric([row.schedule.name], row.missed)
        return [missed]
