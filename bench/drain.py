"""Measurement 2: drain rate of ``system.noop`` with full status tracking, beside bare Dramatiq and BullMQ.

Each round enqueues N jobs first, then starts a worker (2 processes × 8 threads, or × concurrency 8)
and times how long it takes to run them all; the systems alternate (bare, ours, BullMQ, bare, ours,
BullMQ, ...) and the median of the per-round ratios is reported, since the machine is shared and drifts.

- Ours: N jobs submitted with the Publisher SDK (``submit_many`` in chunks of 500 from 4 threads:
  a Redis record per job and confirmed publishes), then
  ``dramatiq offload_email.worker:setup --queues email system``. Done when the status store's
  ``<prefix>:idx:bench:t:system.noop:s:succeeded`` sorted set holds N members (polled every 20 ms).
- Bare: N Dramatiq messages for :func:`bench.bare_worker.bare_noop`, confirmed by the broker like
  ours (so both drains start from messages on disk), then ``dramatiq bench.bare_worker``. Done when the queue's
  ready count is 0 (passive ``queue_declare``) and, after the worker stopped, its processes' dumps
  add up to N completions.
- BullMQ: N jobs added with ``addBulk`` in chunks of 1,000 (``bench/bullmq/enqueue.mjs``, BullMQ's
  defaults: a completed job stays recorded), then ``bench/bullmq/worker.mjs``: 2 Node processes,
  each a ``Worker`` with concurrency 8, each job one Redis ``INCR`` of a counter. Done when the
  counter reaches N (polled every 20 ms); ``bench/bullmq/drain.mjs`` then reads every completed
  job's ``processedOn`` and ``finishedOn``. Its keys live under :data:`bench.node.PREFIX` and are
  deleted after the run.

Timing is identical for both and excludes worker boot: the drain window runs from the first job
started to the last job finished, from timestamps taken inside the workers (ours: ``started_at``
and ``finished_at`` of the job records; bare: the time each actor call ran; BullMQ: ``processedOn``
and ``finishedOn``, which its workers take as they move a job to active and to completed). Rate = N ÷ window.
The notes add the steady rate between the 5th and 95th percentile completions, which also leaves
out the two worker processes booting at slightly different times. CPU is metered per process group
(worker, RabbitMQ, Redis, the benchmark's own process) from the first completion seen to the last,
so each run also says how many µs of CPU a job cost each group.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL
from dramatiq.common import dq_name, xq_name

from bench import infra, node
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
    #: Redis commands and server time per job while the worker ran (ours and BullMQ).
    redis_per_job: str | None = None

    @property
    def rate(self) -> float:
        """Jobs per second over the drain window."""
        return self.completed / self.window_s if self.window_s > 0 else float("nan")

    def cpu_us_per_job(self) -> dict[str, float] | None:
        """µs of CPU each metered process group spent per job completed in the CPU window (None: not metered)."""
        if not self.cpu or not self.cpu_jobs:
            return None
        return {name: cores * self.cpu.wall / self.cpu_jobs * 1e6 for name, cores in self.cpu.groups.items()}

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
            "cpu_us_per_job": self.cpu_us_per_job(),
            "problem": self.problem,
            "redis_per_job": self.redis_per_job,
        }


def ratio(ours: float, theirs: float) -> float:
    """``ours ÷ theirs``, NaN unless both are positive numbers."""
    return ours / theirs if ours > 0 and theirs > 0 else float("nan")


def finite(values: list[float]) -> list[float]:
    """``values`` without NaNs (runs that broke), so that a median reads only real figures."""
    return [value for value in values if value == value]


@dataclass
class DrainRound:
    """One round: each system drained the same N once, in this order."""

    bare: DrainRun
    ours: DrainRun
    bullmq: DrainRun

    def runs(self) -> tuple[DrainRun, DrainRun, DrainRun]:
        """The three runs in the order they ran."""
        return (self.bare, self.ours, self.bullmq)

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {run.system: run.as_dict() for run in self.runs()}


@dataclass
class DrainResult:
    """All rounds."""

    rounds: list[DrainRound]

    @property
    def ratios(self) -> list[float]:
        """Ours ÷ bare per round (NaN where one broke)."""
        return [ratio(r.ours.rate, r.bare.rate) for r in self.rounds]

    @property
    def steady_ratios(self) -> list[float]:
        """Ours ÷ bare per round, steady rates."""
        return [ratio(r.ours.steady_per_s, r.bare.steady_per_s) for r in self.rounds]

    @property
    def bullmq_ratios(self) -> list[float]:
        """Ours ÷ BullMQ per round (NaN where one broke)."""
        return [ratio(r.ours.rate, r.bullmq.rate) for r in self.rounds]

    @property
    def bullmq_steady_ratios(self) -> list[float]:
        """Ours ÷ BullMQ per round, steady rates."""
        return [ratio(r.ours.steady_per_s, r.bullmq.steady_per_s) for r in self.rounds]

    def median_rate(self, system: str) -> float:
        """Median jobs/s of ``system`` (``bare``, ``ours`` or ``bullmq``) over the rounds it did not break."""
        return median(finite([getattr(r, system).rate for r in self.rounds]))

    def median_cpu(self, system: str) -> dict[str, float]:
        """Median µs of CPU per job of each process group of ``system`` over the metered rounds."""
        metered = [us for r in self.rounds if (us := getattr(r, system).cpu_us_per_job())]
        names = {name for us in metered for name in us}
        return {name: median([us.get(name, 0.0) for us in metered]) for name in sorted(names)}


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
    """Submit ``bodies`` with the SDK (``submit_many`` in chunks, from several threads), with
    ``overrides`` of the bench's settings; returns the seconds it took."""
    from offload.publish import Publisher

    publisher = Publisher.from_settings(settings().model_copy(update=overrides))
    chunks = [bodies[i : i + CHUNK] for i in range(0, len(bodies), CHUNK)]
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(ENQUEUE_THREADS) as pool:
            list(pool.map(lambda chunk: publisher.submit_many(chunk, tenant=TENANT), chunks))
    finally:
        publisher.close()
    return time.monotonic() - started


@dataclass
class Watched:
    """What :func:`watch_drain` saw: CPU snapshots at the first and last completion, and why it stopped early."""

    first: CpuSnapshot | None
    last: CpuSnapshot | None
    first_count: int
    done: int
    problem: str | None
    stats_before: dict[str, tuple[int, int]]
    stats_after: dict[str, tuple[int, int]]

    def run(
        self, system: str, n: int, enqueue_s: float, started: list[int], finished: list[int], problem: str | None
    ) -> DrainRun:
        """The drain's figures from the jobs' start and end times (ms) read inside the workers."""
        window = (max(finished) - min(started)) / 1000 if started and finished else 0.0
        return DrainRun(
            system,
            n,
            len(finished),
            enqueue_s,
            window,
            steady_rate([f / 1000 for f in finished]),
            cpu_window(self.first, self.last),
            self.done - self.first_count,
            problem,
            infra.per_unit(self.stats_before, self.stats_after, n),
        )


def watch_drain(
    worker: Child, client: Any, n: int, completed: Callable[[], int], stats_before: dict[str, tuple[int, int]]
) -> Watched:
    """Poll ``completed()`` until ``n`` jobs are done, the worker exits or the drain times out; stop the worker.

    The CPU of the worker's group (and RabbitMQ's, Redis's) is snapshotted at the first completion
    seen and at the last, so that worker boot stays out of the window; Redis's command stats are
    read at the end.
    """
    meter = CpuMeter(standard_groups(worker=worker.group))
    first: CpuSnapshot | None = None
    last: CpuSnapshot | None = None
    first_count = done = 0
    problem = None
    stats_after = stats_before
    deadline = time.monotonic() + _deadline(n)
    try:
        while time.monotonic() < deadline:
            done = completed()
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
            problem = f"timed out with {done} of {n} done"
    finally:
        worker.stop()
    return Watched(first, last, first_count, done, problem, stats_before, stats_after)


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
    watched = watch_drain(worker, client, n, lambda: int(client.zcard(succeeded_key)), stats_before)
    problem = watched.problem
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
    return watched.run("ours", n, enqueue_s, started, finished, problem)


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


# -- BullMQ -----------------------------------------------------------------------------------


def drain_bullmq(cfg: BenchConfig, n: int, label: str) -> DrainRun:
    """Add ``n`` BullMQ jobs, start its workers, time it until their counter reaches ``n``.

    A run that breaks (Node missing, a script failing) comes back with its ``problem`` set.
    """
    infra.reset()
    client = infra.redis_client()
    done_key = f"{node.PREFIX}:done"
    try:
        added = node.run_script("enqueue.mjs", "bulk", n, 0)
    except RuntimeError as exc:
        client.close()
        node.remove_keys()
        return DrainRun("bullmq", n, 0, 0.0, 0, float("nan"), None, 0, f"adding the jobs failed: {exc}")
    enqueue_s = float(added["seconds"])
    if int(added["waiting"]) != n:
        client.close()
        node.remove_keys()
        return DrainRun("bullmq", n, 0, enqueue_s, 0, float("nan"), None, 0, f"{added['waiting']} of {n} jobs waiting")
    wait_quiet(f"drain bullmq {label}")
    worker = node.start_workers(cfg, f"worker-bullmq-{label}", "noop")
    watched = watch_drain(worker, client, n, lambda: int(client.get(done_key) or 0), infra.command_stats(client))
    problem = watched.problem
    started: list[int] = []
    finished: list[int] = []
    try:
        left = node.run_script("drain.mjs")
        started, finished = [int(t) for t in left["started"] if t], [int(t) for t in left["finished"] if t]
        if (left["failed"] or left["waiting"] or left["active"]) and not problem:
            problem = f"{left['failed']} failed, {left['waiting']} waiting, {left['active']} active afterwards"
    except RuntimeError as exc:
        problem = problem or f"reading the completed jobs failed: {exc}"
    client.close()
    node.remove_keys()
    infra.reset()
    return watched.run("bullmq", n, enqueue_s, started, finished, problem)


def measure(cfg: BenchConfig) -> DrainResult:
    """Alternate bare, ours and BullMQ for ``cfg.rounds`` rounds."""
    node.ensure_installed()
    rounds = []
    for index in range(1, cfg.rounds + 1):
        runs = []
        for title, drain in (("bare Dramatiq", drain_bare), ("ours", drain_ours), ("BullMQ", drain_bullmq)):
            print(f">> drain round {index}/{cfg.rounds}: {title}", flush=True)
            run = drain(cfg, cfg.jobs, str(index))
            print(f"   {run.system}: {run.rate:,.0f} jobs/s" + (f" ({run.problem})" if run.problem else ""), flush=True)
            runs.append(run)
        rounds.append(DrainRound(*runs))
    return DrainResult(rounds)


def notes(result: DrainResult) -> list[str]:
    """Per-round figures, steady rates and what limited each drain."""
    lines = []
    for index, drain_round in enumerate(result.rounds, start=1):
        bare, ours, bull = drain_round.runs()
        lines.append(
            f"drain round {index}: bare {bare.rate:,.0f}/s (steady {bare.steady_per_s:,.0f}/s), "
            f"ours {ours.rate:,.0f}/s (steady {ours.steady_per_s:,.0f}/s), "
            f"BullMQ {bull.rate:,.0f}/s (steady {bull.steady_per_s:,.0f}/s); "
            f"ours ÷ bare {ratio(ours.rate, bare.rate):.2f} "
            f"(steady {ratio(ours.steady_per_s, bare.steady_per_s):.2f}), "
            f"ours ÷ BullMQ {ratio(ours.rate, bull.rate):.2f} "
            f"(steady {ratio(ours.steady_per_s, bull.steady_per_s):.2f})"
        )
        for run in drain_round.runs():
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
    first_bare, first_ours, first_bull = result.rounds[0].runs()
    lines.append(
        f"drain setup (not compared): ours enqueued {first_ours.jobs:,} with submit_many × {ENQUEUE_THREADS} threads "
        f"in {first_ours.enqueue_s:.1f} s; bare published {first_bare.jobs:,} "
        f"(confirmed, batched) in {first_bare.enqueue_s:.1f} s; BullMQ added {first_bull.jobs:,} "
        f"(addBulk × {node.BULK_CHUNK:,}, one process) in {first_bull.enqueue_s:.1f} s"
    )
    return lines
