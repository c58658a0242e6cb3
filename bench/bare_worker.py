"""The bare Dramatiq reference: ``dramatiq bench.bare_worker --processes 2 --threads 8``.

A plain ``RabbitmqBroker(confirm_delivery=True)`` with Dramatiq's default middleware, on the same
broker (vhost ``offload_bench``) as the real worker, and no Redis on the hot path:

- :func:`bare_noop` is the drain reference. It only appends the time it ran to an in-process list
  (a few hundred nanoseconds); each worker process writes its list to ``$BENCH_BARE_OUT/<pid>.json``
  when it shuts down, so counting completions costs the drain nothing.
- ``BENCH_BARE_MAX_PRIORITY`` (``--bare-priority``) declares its queue with ``x-max-priority`` like
  Offload's queues, to see what RabbitMQ's priority queues cost on their own.
- :func:`bare_probe` is the latency reference. It gets its message's ``message_timestamp`` as its
  argument and records ``(message_timestamp, started)`` in Redis: the same two wall-clock
  milliseconds the real worker records as ``created_at`` and ``started_at``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import dramatiq
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import Middleware

from bench.config import BARE_QUEUE, BROKER_URL, REDIS_URL

#: Redis list of ``"<message_timestamp>:<started>"`` entries written by :func:`bare_probe`.
PROBE_KEY = "bench:bare:probes"

_ran: list[float] = []
_redis: redis.Redis | None = None
_redis_lock = threading.Lock()


class CompletionDump(Middleware):
    """Writes this process's completion times to ``$BENCH_BARE_OUT/<pid>.json`` at shutdown."""

    def after_worker_boot(self, _broker: Any, _worker: Any) -> None:
        self.booted = time.time()

    def before_worker_shutdown(self, _broker: Any, _worker: Any) -> None:
        folder = os.environ.get("BENCH_BARE_OUT")
        if not folder:
            return
        data = {"pid": os.getpid(), "booted": getattr(self, "booted", None), "ran": _ran}
        Path(folder, f"{os.getpid()}.json").write_text(json.dumps(data))


#: ``x-max-priority`` of the bare queue (None: a plain queue, Dramatiq's default).
MAX_PRIORITY = int(os.environ.get("BENCH_BARE_MAX_PRIORITY") or 0) or None

broker = RabbitmqBroker(
    url=os.environ.get("OFFLOAD_BROKER_URL", BROKER_URL), confirm_delivery=True, max_priority=MAX_PRIORITY
)
broker.add_middleware(CompletionDump())
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=BARE_QUEUE, actor_name="bench_bare_noop")
def bare_noop() -> None:
    """Do nothing (record when, for the drain's count and window)."""
    _ran.append(time.time())


def _client() -> redis.Redis:
    global _redis
    with _redis_lock:
        if _redis is None:
            _redis = redis.Redis.from_url(os.environ.get("OFFLOAD_REDIS_URL", REDIS_URL))
        return _redis


@dramatiq.actor(queue_name=BARE_QUEUE, actor_name="bench_bare_probe")
def bare_probe(message_timestamp: int) -> None:
    """Record when this message was created and when the actor started (both ms since the epoch)."""
    started = int(time.time() * 1000)
    _client().rpush(PROBE_KEY, f"{message_timestamp}:{started}")
