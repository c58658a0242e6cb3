"""Enqueue from one client process, beside BullMQ: one job at a time, and in batches of 1,000.

Each side sends no-op jobs from one process, each call awaited before the next, after 50 warm-up
sends that are not timed; no worker runs, so the jobs wait (RabbitMQ's ``system`` queue, BullMQ's
wait list). Per round, in this order:

- ours, one by one: ``Publisher.submit({"type": "system.noop", "payload": {}}, tenant="bench")``
  ``--enqueues`` times: each validated, its record written to Redis, its message confirmed by the broker;
- BullMQ, one by one: ``await queue.add("system.noop", {})`` as many times (``bench/bullmq/enqueue.mjs add``);
- ours, batched: ``Publisher.submit_many`` of 1,000 bodies, for ``--jobs`` jobs (independent jobs as
  ``addBulk`` makes them: every job's record and one round of confirms per call);
- BullMQ, batched: ``await queue.addBulk(...)`` of 1,000 jobs, for as many (``enqueue.mjs bulk``).

Rate = jobs ÷ the seconds of the timed sends. Rounds repeat (``--rounds``); each row is the median
of the per-round ratios ours ÷ BullMQ. CPU is metered for the client process (ours: the
benchmark's own process, whose threads include the publisher's connection; BullMQ: the Node
process's ``process.cpuUsage()`` over its timed adds), RabbitMQ and Redis. Queues, records and
BullMQ's keys (under :data:`bench.node.PREFIX`) are deleted after every run.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, replace
from typing import Any

from bench import infra, node
from bench.config import TENANT, BenchConfig, settings
from bench.drain import finite, ratio
from bench.procs import CpuMeter, CpuUsage, limit_line, standard_groups, wait_quiet
from bench.stats import median

WARMUP = 50
BODY: dict[str, Any] = {"type": "system.noop", "payload": {}}
#: The two ways of enqueueing, with BullMQ's call for each.
MODES = {"single": "add", "batch": "bulk"}


@dataclass
class EnqueueRun:
    """One system's timed sends in one mode."""

    system: str
    mode: str
    jobs: int
    seconds: float
    #: CPU seconds the client process spent over the timed sends.
    client_cpu_s: float
    #: The machine's CPU over the timed sends (ours) or over the Node process's whole life (BullMQ,
    #: its boot and warm-up adds included).
    cpu: CpuUsage | None
    problem: str | None = None

    @property
    def rate(self) -> float:
        """Jobs per second over the timed sends."""
        return self.jobs / self.seconds if self.seconds > 0 else float("nan")

    def cpu_us_per_job(self) -> dict[str, float] | None:
        """µs of CPU per job of the client, RabbitMQ and Redis (None: not metered)."""
        if self.cpu is None or not self.jobs:
            return None
        wall = self.cpu.wall
        return {
            "client": self.client_cpu_s / self.jobs * 1e6,
            "rabbitmq": self.cpu.groups.get("rabbitmq", 0.0) * wall / self.jobs * 1e6,
            "redis": self.cpu.groups.get("redis", 0.0) * wall / self.jobs * 1e6,
        }

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "system": self.system,
            "mode": self.mode,
            "jobs": self.jobs,
            "seconds": round(self.seconds, 4),
            "jobs_per_s": round(self.rate, 1),
            "client_cpu_s": round(self.client_cpu_s, 4),
            "cpu": self.cpu.as_dict() if self.cpu else None,
            "cpu_us_per_job": self.cpu_us_per_job(),
            "problem": self.problem,
        }


@dataclass
class EnqueueResult:
    """Every round's runs."""

    rounds: list[list[EnqueueRun]]

    def run(self, index: int, system: str, mode: str) -> EnqueueRun:
        """Round ``index``'s run of ``system`` (``ours``, ``bullmq``) in ``mode`` (``single``, ``batch``)."""
        return next(r for r in self.rounds[index] if r.system == system and r.mode == mode)

    def ratios(self, mode: str) -> list[float]:
        """Ours ÷ BullMQ per round in ``mode`` (NaN where one broke)."""
        return [
            ratio(self.run(i, "ours", mode).rate, self.run(i, "bullmq", mode).rate) for i in range(len(self.rounds))
        ]

    def median_rate(self, system: str, mode: str) -> float:
        """Median jobs/s of ``system`` in ``mode`` over the rounds it did not break."""
        return median(finite([self.run(i, system, mode).rate for i in range(len(self.rounds))]))

    def median_cpu(self, system: str, mode: str) -> dict[str, float]:
        """Median µs of CPU per job of each metered group of ``system`` in ``mode``."""
        metered = [us for i in range(len(self.rounds)) if (us := self.run(i, system, mode).cpu_us_per_job())]
        names = {name for us in metered for name in us}
        return {name: median([us.get(name, 0.0) for us in metered]) for name in sorted(names)}

    def problems(self) -> list[str]:
        """Every run's problem, named."""
        return [f"{r.system} {r.mode}: {r.problem}" for runs in self.rounds for r in runs if r.problem]


def children_cpu() -> float:
    """CPU seconds of this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def enqueue_ours(mode: str, jobs: int, label: str) -> EnqueueRun:
    """Send ``jobs`` no-ops through the SDK from this process, one by one or in batches of 1,000."""
    from offload.publish import Publisher

    infra.reset()
    publisher = Publisher.from_settings(settings())
    meter = CpuMeter(standard_groups())
    problem = None
    try:
        for _ in range(WARMUP):
            publisher.submit(BODY, tenant=TENANT)
        wait_quiet(f"enqueue ours {mode} {label}")
        before, cpu_before = meter.snapshot(), time.process_time()
        started = time.perf_counter()
        if mode == "single":
            for _ in range(jobs):
                publisher.submit(BODY, tenant=TENANT)
        else:
            for offset in range(0, jobs, node.BULK_CHUNK):
                publisher.submit_many([BODY] * min(node.BULK_CHUNK, jobs - offset), tenant=TENANT)
        seconds = time.perf_counter() - started
        after, cpu_after = meter.snapshot(), time.process_time()
    finally:
        publisher.close()
    with infra.rabbit() as conn:
        queued = conn.wait_ready("system", jobs + WARMUP, timeout=10)
    if queued != jobs + WARMUP:
        problem = f"{queued} messages queued, {jobs + WARMUP} sent"
    infra.reset()
    return EnqueueRun("ours", mode, jobs, seconds, cpu_after - cpu_before, CpuMeter.usage(before, after), problem)


def enqueue_bullmq(mode: str, jobs: int, label: str) -> EnqueueRun:
    """Send ``jobs`` no-ops with BullMQ's ``queue.add`` one by one, or ``addBulk`` of 1,000."""
    infra.reset()
    wait_quiet(f"enqueue bullmq {mode} {label}")
    meter = CpuMeter(standard_groups())
    before, children_before = meter.snapshot(), children_cpu()
    try:
        done = node.run_script("enqueue.mjs", MODES[mode], jobs, WARMUP)
    except RuntimeError as exc:
        node.remove_keys()
        return EnqueueRun("bullmq", mode, jobs, 0.0, 0.0, None, str(exc))
    usage = CpuMeter.usage(before, meter.snapshot())
    # The Node process is a reaped child by now: its CPU (boot included) shows in RUSAGE_CHILDREN.
    client = (children_cpu() - children_before) / usage.wall
    usage = replace(usage, groups={**usage.groups, "node": client}, other=max(0.0, usage.other - client))
    problem = None
    if int(done["waiting"]) != jobs + WARMUP:
        problem = f"{done['waiting']} jobs waiting, {jobs + WARMUP} added"
    node.remove_keys()
    infra.reset()
    return EnqueueRun("bullmq", mode, jobs, float(done["seconds"]), float(done["cpu_s"]), usage, problem)


def measure(cfg: BenchConfig) -> EnqueueResult:
    """``cfg.rounds`` rounds of: ours one by one, BullMQ one by one, ours batched, BullMQ batched."""
    node.ensure_installed()
    rounds = []
    sizes = {"single": cfg.enqueues, "batch": cfg.jobs}
    for index in range(1, cfg.rounds + 1):
        runs = []
        for mode, jobs in sizes.items():
            for system, send in (("ours", enqueue_ours), ("bullmq", enqueue_bullmq)):
                print(f">> enqueue round {index}/{cfg.rounds}: {system} {mode} × {jobs:,}", flush=True)
                run = send(mode, jobs, str(index))
                print(f"   {run.rate:,.0f} jobs/s" + (f" ({run.problem})" if run.problem else ""), flush=True)
                runs.append(run)
        rounds.append(runs)
    return EnqueueResult(rounds)


def notes(result: EnqueueResult) -> list[str]:
    """Per-round rates, CPU per job, and any problem."""
    lines = []
    for index, runs in enumerate(result.rounds, start=1):
        lines.append(
            f"enqueue round {index}: "
            + ", ".join(f"{r.system} {r.mode} {r.rate:,.0f}/s" for r in runs)
            + "; ours ÷ BullMQ "
            + ", ".join(f"{mode} {result.ratios(mode)[index - 1]:.2f}" for mode in MODES)
        )
        for r in runs:
            us = r.cpu_us_per_job()
            if r.cpu and us:
                split = ", ".join(f"{name} {value:,.0f}" for name, value in us.items())
                lines.append(
                    f"enqueue round {index} {r.system} {r.mode}: {sum(us.values()):,.0f} µs CPU per job ({split} µs); "
                    f"{limit_line(r.cpu)}"
                )
    lines += [f"enqueue: PROBLEM: {problem}" for problem in result.problems()]
    return lines
