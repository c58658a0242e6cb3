"""Measurement 2: drain rate of ``system.noop`` with full status tracking, beside bare Dramatiq.

Each round enqueues N jobs first, then starts a worker (2 processes × 8 threads) and times how long
it takes to run them all; bare and ours alternate (bare, ours, bare, ours, ...) and the median of
the per-round ratios is reported, since the machine is shared and drifts.

- Ours: N jobs submitted with the Publisher SDK (``submit_batch`` in chunks of 500 from 4 threads:
  a Redis record per job and confirmed publishes), then
  ``dramatiq offload_email.worker:setup --queues email system``. Done when the status store's
  ``<prefix>:idx:bench:t:system.noop:s:succeeded`` sorted set holds N members (polled every 20 ms).
- Bare: N Dramatiq messages for :func:`bench.bare_worker.bare_noop`, confirmed by the broker like
  ours (so both drains start from messages on disk), then ``dramatiq bench.bare_worker``. Done when the queue's
  ready count is 0 (passive ``queue_declare``) and, after the worker stopped, its processes' dumps
  add up to N completions.

Timing is identical for both and excludes worker boot: the drain window runs from the first job
started to the last job finished, from timestamps taken inside the workers (ours: ``started_at``
and ``finished_at`` of the job records; bare: the time each actor call ran). Rate = N ÷ window.
The notes add the steady rate between the 5th and 95th percentile completions, which also leaves
out the two worker processes booting at slightly different times.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL
from dramatiq.common import dq_name, xq_name

from bench import infra
from bench.config import BARE_QUEUE, BROKER_URL, TENANT, BenchConfig, child_env, settings
from bench.procs import Child, CpuMeter, CpuSnapshot, CpuUsage, limit_line, standard_groups, wait_quiet
from bench.stats import median, steady_rate
from offload.publish import ConfirmingPublisher

POLL = 0.02
CHUNK = 500
ENQUEUE_THREADS = 4


@dataclass
class DrainRun:
    """One drain of N jobs by one system."""

    system: str
    jobs: int
    completed: int
    enqueue_s: float
    window_s: float
    steady_per_s: float
    cpu: CpuUsage | None
    cpu_jobs: int
    problem: str | None = None
    #: Redis commands and server time per job while the worker ran (ours only).
    redis_per_job: str | None = None

    @property
    def rate(self) -> float:
        """Jobs per second over the drain window."""
        return self.completed / self.window_s if self.window_s > 0 else float("nan")

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "system": self.system,
            "jobs": self.jobs,
            "completed": self.completed,
            "enqueue_s": round(self.enqueue_s, 3),
            "window_s": round(self.window_s, 3),
            "jobs_per_s": round(self.rate, 1),
            "steady_jobs_per_s": round(self.steady_per_s, 1),
            "cpu": self.cpu.as_dict() if self.cpu else None,
            "cpu_jobs": self.cpu_jobs,
            "problem": self.problem,
            "redis_per_job": self.redis_per_job,
        }


@dataclass
class DrainResult:
    """All rounds."""

    rounds: list[tuple[DrainRun, DrainRun]]  # (bare, ours)

    @property
    def ratios(self) -> list[float]:
        """Ours ÷ bare per round."""
        return [ours.rate / bare.rate for bare, ours in self.rounds]

    @property
    def steady_ratios(self) -> list[float]:
        """Ours ÷ bare per round, steady rates."""
        return [ours.steady_per_s / bare.steady_per_s for bare, ours in self.rounds]

    def median_rate(self, system: str) -> float:
        """Median jobs/s of ``system`` (``bare`` or ``ours``)."""
        return median([(bare if system == "bare" else ours).rate for bare, ours in self.rounds])


def worker_argv(cfg: BenchConfig, target: str, *extra: str) -> list[str]:
    dramatiq = str(Path(sys.executable).parent / "dramatiq")
    return [dramatiq, target, *extra, "--processes", str(cfg.processes), "--threads", str(cfg.threads)]


def _deadline(n: int) -> float:
    """Seconds a drain of ``n`` may take before it is given up (generous: 25 jobs/s)."""
    return 60 + n / 25


def cpu_window(first: CpuSnapshot | None, last: CpuSnapshot | None) -> CpuUsage | None:
    return CpuMeter.usage(first, last) if first and last and last.at > first.at else None


# -- ours --------------------------------------------------------------------------------------


def submit_all(bodies: list[dict[str, Any]], **overrides: Any) -> float:
    """Submit ``bodies`` with the SDK (``submit_batch`` in chunks, from several threads), with
    ``overrides`` of the bench's settings; returns the seconds it took."""
    from offload.publish import Publisher

    publisher = Publisher.from_settings(settings().model_copy(update=overrides))
    chunks = [bodies[i : i + CHUNK] for i in range(0, len(bodies), CHUNK)]
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(ENQUEUE_THREADS) as pool:
            list(pool.map(lambda chunk: publisher.submit_batch(chunk, tenant=TENANT), chunks))
    finally:
        publisher.close()
    return time.monotonic() - started


def drain_ours(cfg: BenchConfig, n: int, label: str) -> DrainRun:
    """Enqueue ``n`` jobs, start the real worker, time it until all are ``succeeded``."""
    infra.reset()
    enqueue_s = submit_all([{"type": "system.noop", "payload": {}}] * n)
    with infra.rabbit() as conn:
        queued = conn.wait_ready("system", n, timeout=30)
    if queued != n:
        infra.reset()
        return DrainRun("ours", n, 0, enqueue_s, 0, float("nan"), None, 0, f"{queued} of {n} messages queued")
    wait_quiet(f"drain ours {label}")
    client = infra.redis_client()
    succeeded_key = infra.index_key("succeeded", "system.noop")
    stats_before = infra.command_stats(client)
    worker = Child(
        f"worker-ours-{label}",
        worker_argv(cfg, "offload_email.worker:setup", "--queues", "email", "system"),
        env=child_env(),
        logs=cfg.logs,
    )
    meter = CpuMeter(standard_groups(worker=worker.group))
    first: CpuSnapshot | None = None
    last: CpuSnapshot | None = None
    first_count = done = 0
    problem = None
    stats_after = stats_before
    deadline = time.monotonic() + _deadline(n)
    try:
        while time.monotonic() < deadline:
            done = client.zcard(succeeded_key)
            if first is None and done > 0:
                first, first_count = meter.snapshot(), done
            if done >= n:
                last = meter.snapshot()
                stats_after = infra.command_stats(client)
                break
            if not worker.alive():
                problem = f"worker exited with {worker.proc.returncode}: {worker.tail(5)}"
                break
            time.sleep(POLL)
        else:
            problem = f"timed out with {done} of {n} succeeded"
    finally:
        worker.stop()
    succeeded = client.zrange(succeeded_key, 0, -1)
    started: list[int] = []
    finished: list[int] = []
    for i in range(0, len(succeeded), 2000):
        pipe = client.pipeline(transaction=False)
        for job_id in succeeded[i : i + 2000]:
            pipe.hmget(infra.job_key(str(job_id)), "started_at", "finished_at")
        for start, finish in pipe.execute():
            if start and finish:
                started.append(int(start))
                finished.append(int(finish))
    not_succeeded = infra.count_in(client, "failed", "dead", "retrying", "running")
    if not_succeeded and not problem:
        problem = f"{not_succeeded} jobs failed, died or were left running"
    client.close()
    infra.reset()
    window = (max(finished) - min(started)) / 1000 if started else 0.0
    return DrainRun(
        "ours",
        n,
        len(finished),
        enqueue_s,
        window,
        steady_rate([f / 1000 for f in finished]),
        cpu_window(first, last),
        done - first_count,
        problem,
        infra.per_unit(stats_before, stats_after, n),
    )


# -- bare Dramatiq -----------------------------------------------------------------------------


def bare_queue_arguments(queue: str) -> dict[str, dict[str, Any]]:
    """The queues behind a bare Dramatiq queue and their arguments, exactly as Dramatiq declares them."""
    from bench.bare_worker import MAX_PRIORITY

    main: dict[str, Any] = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": xq_name(queue)}
    if MAX_PRIORITY:
        main["x-max-priority"] = MAX_PRIORITY
    return {queue: main, dq_name(queue): dict(main), xq_name(queue): {"x-message-ttl": DEAD_MESSAGE_TTL}}


def _enqueue_bare(n: int) -> float:
    """Put ``n`` Dramatiq messages for the bare no-op actor on its queue, confirmed; returns the seconds.

    The bodies are Dramatiq's own (``Message.encode()``); they travel through Offload's batching
    confirming publisher only because one-by-one confirmed sends would take minutes. Confirmed
    matters: RabbitMQ confirms a persistent message once it is on disk, as ours are, and a drain
    that starts while the broker still holds unwritten messages in memory runs measurably faster.
    """
    from bench.bare_worker import bare_noop

    publisher = ConfirmingPublisher(BROKER_URL, queue_arguments=bare_queue_arguments, timeout=30)
    started = time.monotonic()
    try:
        for i in range(0, n, CHUNK * 4):
            count = min(CHUNK * 4, n - i)
            messages: list[tuple[str, bytes, int | None]] = [
                (BARE_QUEUE, bare_noop.message().encode(), None) for _ in range(count)
            ]
            errors = [e for e in publisher.publish_many(messages, timeout=30) if e is not None]
            if errors:
                raise errors[0]
    finally:
        publisher.close()
    return time.monotonic() - started


def drain_bare(cfg: BenchConfig, n: int, label: str) -> DrainRun:
    """Enqueue ``n`` bare messages, start the bare worker, time it until the queue is drained."""
    infra.reset()
    enqueue_s = _enqueue_bare(n)
    with infra.rabbit() as conn:
        queued = conn.wait_ready(BARE_QUEUE, n, timeout=30)
        if queued != n:
            infra.reset()
            return DrainRun("bare", n, 0, enqueue_s, 0, float("nan"), None, 0, f"{queued} of {n} messages queued")
        wait_quiet(f"drain bare {label}")
        out = Path(tempfile.mkdtemp(prefix="bare-", dir=cfg.logs))
        worker = Child(
            f"worker-bare-{label}",
            worker_argv(cfg, "bench.bare_worker"),
            env=child_env(BENCH_BARE_OUT=str(out)),
            logs=cfg.logs,
        )
        meter = CpuMeter(standard_groups(worker=worker.group))
        first: CpuSnapshot | None = None
        last: CpuSnapshot | None = None
        first_ready = left = n
        problem = None
        deadline = time.monotonic() + _deadline(n)
        try:
            while time.monotonic() < deadline:
                left = conn.ready(BARE_QUEUE) or 0
                if first is None and left < n:
                    first, first_ready = meter.snapshot(), left
                if left == 0:
                    last = meter.snapshot()
                    time.sleep(0.5)  # the last prefetched messages (at most 2 × 16) finish
                    break
                if not worker.alive():
                    problem = f"worker exited with {worker.proc.returncode}: {worker.tail(5)}"
                    break
                time.sleep(POLL)
            else:
                problem = f"timed out with {left} of {n} messages left"
        finally:
            worker.stop()
        requeued = conn.ready(BARE_QUEUE) or 0
    ran: list[float] = []
    for dump in out.glob("*.json"):
        ran.extend(json.loads(dump.read_text())["ran"])
    if (len(ran) != n or requeued) and not problem:
        problem = f"{len(ran)} of {n} ran, {requeued} left in the queue"
    infra.reset()
    window = max(ran) - min(ran) if ran else 0.0
    return DrainRun(
        "bare",
        n,
        len(ran),
        enqueue_s,
        window,
        steady_rate(ran),
        cpu_window(first, last),
        first_ready,
        problem,
    )


def measure(cfg: BenchConfig) -> DrainResult:
    """Alternate bare and ours for ``cfg.rounds`` rounds."""
    rounds = []
    for index in range(1, cfg.rounds + 1):
        print(f">> drain round {index}/{cfg.rounds}: bare Dramatiq", flush=True)
        bare = drain_bare(cfg, cfg.jobs, str(index))
        print(f"   bare: {bare.rate:,.0f} jobs/s" + (f" ({bare.problem})" if bare.problem else ""), flush=True)
        print(f">> drain round {index}/{cfg.rounds}: ours", flush=True)
        ours = drain_ours(cfg, cfg.jobs, str(index))
        print(f"   ours: {ours.rate:,.0f} jobs/s" + (f" ({ours.problem})" if ours.problem else ""), flush=True)
        rounds.append((bare, ours))
    return DrainResult(rounds)


def notes(result: DrainResult) -> list[str]:
    """Per-round figures, steady rates and what limited each drain."""
    lines = []
    for index, (bare, ours) in enumerate(result.rounds, start=1):
        lines.append(
            f"drain round {index}: bare {bare.rate:,.0f}/s (steady {bare.steady_per_s:,.0f}/s), "
            f"ours {ours.rate:,.0f}/s (steady {ours.steady_per_s:,.0f}/s), "
            f"ratio {ours.rate / bare.rate:.2f} (steady {ours.steady_per_s / bare.steady_per_s:.2f})"
        )
        for run in (bare, ours):
            if run.problem:
                lines.append(f"drain round {index} {run.system}: PROBLEM: {run.problem}")
            if run.cpu and run.cpu_jobs:
                per_job = run.cpu.accounted_cpu_seconds() / run.cpu_jobs * 1e6
                split = ", ".join(
                    f"{name} {cores * run.cpu.wall / run.cpu_jobs * 1e6:,.0f}" for name, cores in run.cpu.groups.items()
                )
                if run.redis_per_job:
                    lines.append(f"drain round {index} {run.system}: Redis per job: {run.redis_per_job}")
                lines.append(
                    f"drain round {index} {run.system}: {limit_line(run.cpu)}; "
                    f"{per_job:,.0f} µs CPU per job, other excluded ({split} µs)"
                )
    first_bare, first_ours = result.rounds[0]
    lines.append(
        f"drain setup (not compared): ours enqueued {first_ours.jobs:,} with submit_batch × {ENQUEUE_THREADS} threads "
        f"in {first_ours.enqueue_s:.1f} s; bare published {first_bare.jobs:,} "
        f"(confirmed, batched) in {first_bare.enqueue_s:.1f} s"
    )
    return lines
