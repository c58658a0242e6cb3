"""Measurement 3: enqueue→start latency on an idle worker, beside bare Dramatiq's and BullMQ's.

With the worker running and idle (warmed up by a few jobs first), jobs are sent one at a time,
``probe_interval`` apart, each waiting for its broker confirm like a real client. The latency of a
job is the wall-clock time from its creation to the moment the worker starts it, both in whole
milliseconds since the epoch, both taken by the code under test:

- ours: ``started_at - created_at`` of the job record (``created_at`` is taken by the publisher
  before it writes the record and publishes; ``started_at`` by the worker as it opens the attempt).
  Jobs are sent with ``Publisher.publish("system.noop", {}, tenant="bench")``.
- bare: :func:`bench.bare_worker.bare_probe` records its message's ``message_timestamp`` (taken by
  Dramatiq when the message is built, before the confirmed send) and the time it starts.
- BullMQ: ``bench/bullmq/worker.mjs`` in ``probe`` mode (2 Node processes × concurrency 8) records
  each job's ``job.timestamp`` (taken by ``queue.add`` as it builds the job) and the time it starts;
  ``bench/bullmq/latency.mjs`` sends the probes from one Node process, each ``await queue.add(...)``,
  paced the same way.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from bench import infra, node
from bench.config import BenchConfig, child_env, settings
from bench.procs import Child, wait_quiet
from bench.stats import percentile

WARMUP = 5


@dataclass
class LatencyRun:
    """Latencies of one system, in milliseconds."""

    system: str
    latencies: list[int]
    #: Milliseconds the sender spent in each send call (median).
    send_ms: float
    problem: str | None = None

    def p(self, q: float) -> float:
        """The ``q``-th percentile latency."""
        return percentile(self.latencies, q)

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "system": self.system,
            "count": len(self.latencies),
            "p50_ms": self.p(50),
            "p90_ms": self.p(90),
            "p99_ms": self.p(99),
            "max_ms": max(self.latencies, default=None),
            "send_call_p50_ms": round(self.send_ms, 3),
            "problem": self.problem,
        }


@dataclass
class LatencyResult:
    """Ours beside bare Dramatiq and BullMQ."""

    ours: LatencyRun
    bare: LatencyRun
    bullmq: LatencyRun


def _worker(cfg: BenchConfig, name: str, target: str, *extra: str) -> Child:
    dramatiq = str(Path(sys.executable).parent / "dramatiq")
    argv = [dramatiq, target, *extra, "--processes", str(cfg.processes), "--threads", str(cfg.threads)]
    return Child(name, argv, env=child_env(), logs=cfg.logs)


def _paced(count: int, interval: float, send: Callable[[], object]) -> list[float]:
    """Call ``send()`` ``count`` times, starting one every ``interval`` s; returns each call's ms."""
    durations = []
    began = time.monotonic()
    for i in range(count):
        pause = began + i * interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        start = time.perf_counter()
        send()
        durations.append((time.perf_counter() - start) * 1000)
    return durations


def latency_ours(cfg: BenchConfig) -> LatencyRun:
    """Probe the real worker through the Publisher SDK."""
    from offload.publish import Publisher

    infra.reset()
    wait_quiet("latency ours")
    client = infra.redis_client()
    publisher = Publisher.from_settings(settings())
    worker = _worker(cfg, "worker-ours-latency", "offload_email.worker:setup", "--queues", "email", "system")
    ids: list[str] = []
    problem = None
    try:
        # Warm up: the first job waits for the worker to boot.
        for _ in range(WARMUP):
            job_id = publisher.publish("system.noop", {}, tenant="bench").job_id
            deadline = time.monotonic() + 60
            while client.hget(infra.job_key(job_id), "state") != "succeeded" and time.monotonic() < deadline:
                if not worker.alive():
                    raise RuntimeError(f"worker exited: {worker.tail()}")
                time.sleep(0.01)
        time.sleep(0.5)
        durations = _paced(
            cfg.probes,
            cfg.probe_interval,
            lambda: ids.append(publisher.publish("system.noop", {}, tenant="bench").job_id),
        )
        latencies = _collect_ours(client, ids)
        if len(latencies) != len(ids):
            problem = f"{len(ids) - len(latencies)} of {len(ids)} jobs never started"
    finally:
        worker.stop()
        publisher.close()
        client.close()
        infra.reset()
    return LatencyRun("ours", latencies, percentile(durations, 50), problem)


def _collect_ours(client: redis.Redis, ids: list[str]) -> list[int]:
    """``started_at - created_at`` of each job, waiting (bounded) until all have started."""
    deadline = time.monotonic() + 30
    while True:
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(infra.job_key(job_id), "created_at", "started_at")
        rows = pipe.execute()
        latencies = [int(started) - int(created) for created, started in rows if created and started]
        if len(latencies) == len(ids) or time.monotonic() > deadline:
            return latencies
        time.sleep(0.1)


def latency_bare(cfg: BenchConfig) -> LatencyRun:
    """Probe the bare Dramatiq worker with confirmed sends."""
    from bench.bare_worker import PROBE_KEY, bare_probe, broker

    infra.reset()
    wait_quiet("latency bare")
    client = infra.redis_client()
    worker = _worker(cfg, "worker-bare-latency", "bench.bare_worker")
    problem = None

    def send() -> None:
        message = bare_probe.message(0)
        broker.enqueue(message.copy(args=(message.message_timestamp,)))

    try:
        for expected in range(1, WARMUP + 1):
            send()
            deadline = time.monotonic() + 60
            while client.llen(PROBE_KEY) < expected and time.monotonic() < deadline:
                if not worker.alive():
                    raise RuntimeError(f"worker exited: {worker.tail()}")
                time.sleep(0.01)
        time.sleep(0.5)
        client.delete(PROBE_KEY)
        durations = _paced(cfg.probes, cfg.probe_interval, send)
        deadline = time.monotonic() + 30
        while client.llen(PROBE_KEY) < cfg.probes and time.monotonic() < deadline:
            time.sleep(0.1)
        entries = client.lrange(PROBE_KEY, 0, -1)
        latencies = [int(started) - int(created) for created, started in (str(e).split(":") for e in entries)]
        if len(latencies) != cfg.probes:
            problem = f"{cfg.probes - len(latencies)} of {cfg.probes} probes never started"
    finally:
        worker.stop()
        broker.close()
        client.close()
        infra.reset()
    return LatencyRun("bare", latencies, percentile(durations, 50), problem)


def latency_bullmq(cfg: BenchConfig) -> LatencyRun:
    """Probe BullMQ's idle workers with awaited ``queue.add`` calls; a run that breaks says so in ``problem``."""
    infra.reset()
    wait_quiet("latency bullmq")
    worker = node.start_workers(cfg, "worker-bullmq-latency", "probe")
    interval_ms = round(cfg.probe_interval * 1000)
    try:
        found = node.run_script("latency.mjs", cfg.probes, interval_ms, WARMUP, timeout=120 + cfg.probes)
    except RuntimeError as exc:
        return LatencyRun("bullmq", [], float("nan"), f"{exc}; worker: {worker.tail(3)}")
    finally:
        worker.stop()
        node.remove_keys()
        infra.reset()
    latencies = [int(ms) for ms in found["latencies_ms"]]
    problem = (
        f"{cfg.probes - len(latencies)} of {cfg.probes} probes never started" if len(latencies) < cfg.probes else None
    )
    return LatencyRun("bullmq", latencies, percentile(found["send_ms"], 50), problem)


def measure(cfg: BenchConfig) -> LatencyResult:
    """Bare first, then ours, then BullMQ."""
    node.ensure_installed()
    print(">> latency: bare Dramatiq", flush=True)
    bare = latency_bare(cfg)
    print(">> latency: ours", flush=True)
    ours = latency_ours(cfg)
    print(">> latency: BullMQ", flush=True)
    bullmq = latency_bullmq(cfg)
    return LatencyResult(ours=ours, bare=bare, bullmq=bullmq)


def notes(result: LatencyResult) -> list[str]:
    """Send-call times and any problem."""
    runs = (result.ours, result.bare, result.bullmq)
    lines = [
        f"latency: {len(result.ours.latencies)} probes each; "
        + "; ".join(f"{run.system} p90 {run.p(90):.1f} ms / max {max(run.latencies, default=0)} ms" for run in runs)
        + " (whole-ms timestamps)",
        f"latency: a send call took {result.ours.send_ms:.2f} ms (ours: record + confirmed publish) vs "
        f"{result.bare.send_ms:.2f} ms (bare: confirmed send) vs {result.bullmq.send_ms:.2f} ms "
        "(BullMQ: queue.add), median",
    ]
    for run in runs:
        if run.problem:
            lines.append(f"latency {run.system}: PROBLEM: {run.problem}")
    return lines
