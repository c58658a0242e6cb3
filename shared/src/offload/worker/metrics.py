"""Offload's worker metrics, beside Dramatiq's own (reliability-security.md D9, code-shape G12).

Dramatiq's ``Prometheus`` middleware counts messages per queue and actor (processed, errored,
in progress, duration in milliseconds) and serves every process's metrics from one exposition
server (a fork of the worker's main process, reading prometheus-client's multiprocess files).
What it cannot see is how an Offload job ended: a retry waits in Redis and the message is acked,
so Dramatiq counts it a success. :class:`JobMetrics` adds those, in the same files:

- ``offload_jobs_total{queue, type, state}``: attempts that ended, by the state they left the job
  in (``succeeded``, ``retrying``, ``failed``, ``dead``, ``cancelled``);
- ``offload_job_wait_seconds{queue, type}``: enqueue (or the retry's due time) to start;
- ``offload_job_events_total{queue, type, event}``: what handlers report with ``ctx.count(...)``,
  such as an email not sent again because a redelivery found it sent (``duplicate_not_sent``);
- ``offload_worker_recycles_total{reason}``: processes recycled by the memory guard;
- ``offload_wire_refused_total{queue, reason}``: jobs published on the wire that adoption refused
  (``internal_type``, ``validation_failed``, ``quota_exceeded``, ``unknown_type``...) and dead-lettered;
- ``offload_jobs_lost_total{where}``: job ids a wake-up path found without a record or message
  (``schedule``, ``slot``): each is also logged as an error, and should stay at zero.

Labels are contract and queue names and literal reasons only (a bounded set): never a tenant, a
job id, an address, or a type or queue a message named that no contract has.

Dramatiq's middleware reads ``dramatiq_prom_host``, ``dramatiq_prom_port`` and ``dramatiq_prom_db``
from the environment when imported; the launchers (``Procfile.dev``, compose, Kubernetes) set them
per service, with the host on loopback or the pod network, never a public address.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from offload.worker.metric_buffer import MetricBuffer

logger = logging.getLogger(__name__)

#: Queue-wait buckets, seconds: from an idle worker's few milliseconds to an hour's backlog.
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class JobMetrics(Middleware):
    """Records job outcomes and queue waits; the metrics are made after process boot.

    prometheus-client picks single- or multi-process storage when it is first imported, so it is
    imported here only after Dramatiq's ``Prometheus`` middleware (placed after this one: Dramatiq
    runs "after" hooks from the last middleware to the first) has
    pointed ``PROMETHEUS_MULTIPROC_DIR`` at its files. Until then (and in processes that never
    boot, like tests calling handlers directly) recording does nothing.
    """

    def __init__(self) -> None:
        #: Where job threads record the per-job updates (outcomes, waits); applied by its thread.
        self.buffer = MetricBuffer()
        self.ended_total: Any = None
        self.wait_seconds: Any = None
        self.events_total: Any = None
        self.recycles_total: Any = None
        self.refused_total: Any = None
        self.lost_total: Any = None
        self.registry: Any = None

    def after_process_boot(self, broker: dramatiq.Broker) -> None:  # noqa: ARG002 - Dramatiq's hook signature
        """Create the metrics (in the multiprocess files when Dramatiq's middleware set them up)."""
        import prometheus_client

        self.registry = prometheus_client.CollectorRegistry()
        self.ended_total = prometheus_client.Counter(
            "offload_jobs_total",
            "Job attempts that ended, by the state they left the job in.",
            ["queue", "type", "state"],
            registry=self.registry,
        )
        self.wait_seconds = prometheus_client.Histogram(
            "offload_job_wait_seconds",
            "Seconds from enqueue (or a retry's due time) to the start of an attempt.",
            ["queue", "type"],
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )

        self.recycles_total = prometheus_client.Counter(
            "offload_worker_recycles_total",
            "Worker processes recycled gracefully, by reason (memory: past OFFLOAD_WORKER_MAX_MEMORY_MB).",
            ["reason"],
            registry=self.registry,
        )
        self.events_total = prometheus_client.Counter(
            "offload_job_events_total",
            "Notable things handlers reported (ctx.count), by name.",
            ["queue", "type", "event"],
            registry=self.registry,
        )
        self.refused_total = prometheus_client.Counter(
            "offload_wire_refused_total",
            "Jobs published on the wire that adoption refused (dead-lettered), by reason.",
            ["queue", "reason"],
            registry=self.registry,
        )
        self.lost_total = prometheus_client.Counter(
            "offload_jobs_lost_total",
            "Job ids a wake-up path found without a record or stored message (should stay 0).",
            ["where"],
            registry=self.registry,
        )
        self.buffer.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:  # noqa: ARG002
        """Apply what the last jobs recorded (their threads have ended by now)."""
        self.buffer.stop()

    def event(self, queue: str, job_type: str, name: str) -> None:
        """Count one ``name`` event of a job (names are literals in handler code: a bounded set)."""
        if self.events_total is not None:
            self.events_total.labels(queue, job_type, name).inc()

    def ended(self, queue: str, job_type: str, state: str) -> None:
        """Count an attempt that left its job in ``state``."""
        if self.ended_total is not None:
            self.buffer.count(self.ended_total, (queue, job_type, state))

    def refused(self, queue: str, reason: str) -> None:
        """Count a wire job refused at adoption (``queue``: a contract's queue, or ``other``)."""
        if self.refused_total is not None:
            self.refused_total.labels(queue, reason).inc()

    def lost(self, where: str) -> None:
        """Count a job id found without a record where a job was to be woken (``where``: a literal)."""
        if self.lost_total is not None:
            self.lost_total.labels(where).inc()

    def recycled(self, reason: str) -> None:
        """Count a graceful recycle of this worker process (``reason`` is a literal: a bounded set)."""
        if self.recycles_total is not None:
            self.recycles_total.labels(reason).inc()

    def waited(self, queue: str, job_type: str, seconds: float) -> None:
        """Observe how long a job waited before this attempt started."""
        if self.wait_seconds is not None:
            self.buffer.observe(self.wait_seconds, (queue, job_type), max(0.0, seconds))


def batched_prometheus(buffer: MetricBuffer) -> Middleware:
    """Dramatiq's ``Prometheus`` middleware with its per-message updates recorded in ``buffer``.

    The same metrics (``dramatiq_messages_total``, ``dramatiq_message_errors_total``,
    ``dramatiq_message_duration_milliseconds``, ``dramatiq_messages_inprogress``; the rest as
    Dramatiq keeps them) and the same exposition server; a message's counts and duration reach the
    files at the buffer's next flush, and the in-progress gauge is set from the messages running
    at each flush rather than moved twice per message (see :mod:`offload.worker.metric_buffer`).
    Imported here, not at the top: Dramatiq's module reads ``dramatiq_prom_*`` when first imported.
    """
    from dramatiq.broker import MessageProxy
    from dramatiq.common import current_millis
    from dramatiq.middleware.prometheus import Prometheus

    class BatchedPrometheus(Prometheus):
        def __init__(self) -> None:
            super().__init__()
            #: Message id → (queue, actor) of the messages this process is running now.
            self.running: dict[str, tuple[str, str]] = {}
            self.gauged: set[tuple[str, str]] = set()

        def after_process_boot(self, broker: dramatiq.Broker) -> None:
            super().after_process_boot(broker)  # type: ignore[no-untyped-call]
            buffer.on_flush(self.set_inprogress)

        def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
            buffer.stop()  # before Dramatiq marks this process's files dead
            super().after_worker_shutdown(broker, worker)  # type: ignore[no-untyped-call]

        def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:  # noqa: ARG002
            labels = (message.queue_name, message.actor_name)
            if message.message_id in self.delayed_messages:
                self.delayed_messages.remove(message.message_id)
                self.inprogress_delayed_messages.labels(*labels).dec()
            self.running[message.message_id] = labels
            if labels not in self.gauged:  # the series exists from its first message, as with Dramatiq's own
                self.gauged.add(labels)
                self.inprogress_messages.labels(*labels).inc()
            self.message_start_times[message.message_id] = current_millis()

        def after_process_message(
            self,
            broker: dramatiq.Broker,  # noqa: ARG002
            message: MessageProxy,
            *,
            result: Any = None,  # noqa: ARG002
            exception: BaseException | None = None,
        ) -> None:
            labels = (message.queue_name, message.actor_name)
            started = self.message_start_times.pop(message.message_id, current_millis())
            self.running.pop(message.message_id, None)
            buffer.observe(self.message_durations, labels, current_millis() - started)
            buffer.count(self.total_messages, labels)
            if exception is not None:
                buffer.count(self.total_errored_messages, labels)

        after_skip_message = after_process_message

        def set_inprogress(self) -> None:
            counts = collections.Counter(list(self.running.values()))
            self.gauged |= set(counts)
            for labels in self.gauged:
                self.inprogress_messages.labels(*labels).set(counts.get(labels, 0))

    return BatchedPrometheus()
