"""Per-job metric updates, applied in batches by one thread of the worker process.

Every job changes a handful of Prometheus values (Dramatiq's messages total, duration and
in-progress gauge; Offload's outcome count and queue wait). In the worker's multiprocess mode
each change takes prometheus-client's process-wide lock and writes a memory-mapped file; beside
eight job threads that cost more than the writes themselves (a drain of no-op jobs, 2 processes
× 8 threads: the worker's CPU per job went from ~470 to ~430 µs and the drain from ~2,460 to
~2,630 jobs/s when the updates left the job threads). A job thread instead appends a tuple to
:class:`MetricBuffer` (a ``deque`` append: no lock, well under a microsecond), and the buffer's
thread applies them every
:data:`FLUSH_INTERVAL` seconds as one ``inc(n)`` per label set and one pass per histogram child.

What Prometheus reads is at most :data:`FLUSH_INTERVAL` behind (its scrape interval is 15 s), and
the buffer is flushed when the worker stops, so nothing counted is dropped by a graceful stop.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

#: Seconds between two applications of the recorded updates.
FLUSH_INTERVAL = 0.5


class MetricBuffer:
    """Counter increments and histogram observations recorded now, applied by :meth:`flush`.

    ``metric`` arguments are prometheus-client metrics with labels; ``labels`` their values in
    order. :meth:`start` runs the flushing thread (a daemon); :meth:`stop` ends it after a last flush.
    Callables given to :meth:`on_flush` run at every flush too (a gauge set from live state).
    """

    def __init__(self, interval: float = FLUSH_INTERVAL) -> None:
        self.interval = interval
        self._pending: collections.deque[tuple[bool, Any, tuple[str, ...], float]] = collections.deque()
        self._hooks: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flushing = threading.Lock()

    def count(self, metric: Any, labels: tuple[str, ...], amount: float = 1.0) -> None:
        """Add ``amount`` to the counter ``metric`` at ``labels`` (at the next flush)."""
        self._pending.append((False, metric, labels, amount))

    def observe(self, metric: Any, labels: tuple[str, ...], value: float) -> None:
        """Observe ``value`` in the histogram ``metric`` at ``labels`` (at the next flush)."""
        self._pending.append((True, metric, labels, value))

    def on_flush(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` at every flush, after the recorded updates."""
        self._hooks.append(hook)

    def flush(self) -> None:
        """Apply everything recorded so far: one increment per counter child, one pass per histogram child."""
        with self._flushing:
            counts: dict[tuple[Any, tuple[str, ...]], float] = collections.defaultdict(float)
            samples: dict[tuple[Any, tuple[str, ...]], list[float]] = collections.defaultdict(list)
            for _ in range(len(self._pending)):
                is_sample, metric, labels, value = self._pending.popleft()
                if is_sample:
                    samples[metric, labels].append(value)
                else:
                    counts[metric, labels] += value
            for (metric, labels), amount in counts.items():
                metric.labels(*labels).inc(amount)
            for (metric, labels), values in samples.items():
                observe_many(metric.labels(*labels), values)
            for hook in self._hooks:
                hook()

    def start(self) -> None:
        """Start the thread that flushes every :attr:`interval` seconds (once; later calls do nothing)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="offload-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and apply what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # a metric must never stop the worker; the next flush tries again
                logger.exception("Applying worker metrics failed.")


def observe_many(child: Any, values: list[float]) -> None:
    """Observe ``values`` in one histogram child: its buckets and sum change once each.

    Uses the child's bucket values and bounds (prometheus-client's ``Histogram`` keeps them as
    ``_buckets``, ``_upper_bounds`` and ``_sum``); where a version lays them out otherwise, it
    falls back to one ``observe`` per value.
    """
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            child.observe(value)
        return
    per_bucket = [0] * len(bounds)
    for value in values:
        for index, bound in enumerate(bounds):
            if value <= bound:
                per_bucket[index] += 1
                break
    for index, hits in enumerate(per_bucket):
        if hits:
            buckets[index].inc(hits)
    total.inc(sum(values))
