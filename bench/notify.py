"""Measurement 4: what the email worker delivers per second, beside the ``system.noop`` drain.

All three runs use the real worker, ``dramatiq offload_email.worker:setup --queues email webhooks
system`` (2 processes × 8 threads, like the drain), started after its jobs were submitted with the
Publisher SDK (``submit_many`` in chunks of 500 from 4 threads, as the drain does) and stopped
once the status store's succeeded indexes of tenant ``bench`` hold every job (polled
every 20 ms). The per-tenant email quota and the SMTP send rate are switched off
(``OFFLOAD_EMAIL_QUOTA_PER_HOUR=0``, ``OFFLOAD_SMTP_RATE_PER_SECOND=0``), so what is measured is the
worker, not a provider's limit.

- **email.send**: N single emails (one recipient, template ``welcome``), each on an SMTP connection
  of its own (that is what ``email.send`` does), to :mod:`bench.smtp_sink`, a real aiosmtpd server
  in its own process that accepts and counts everything. Rate = emails ÷ the window from the first
  job started to the last finished (the jobs' own ``started_at`` and ``finished_at``).
- **email.batch**: M jobs of :data:`BATCH_SIZE` recipients each, one SMTP session per job, to the
  same sink. Rate = recipients ÷ window. With M jobs and 16 threads the last wave leaves threads
  idle, so a small M understates the rate the worker sustains.
- **webhooks**: K ``system.noop`` jobs with a ``callback_url`` on :mod:`bench.hook_receiver` (a
  keep-alive HTTP server in its own process that answers 200). The worker runs the no-ops; each
  one's ending puts it in the outbox, the promoter thread of each worker process queues its
  ``webhook.deliver`` job, and the worker delivers it. Rate = K ÷ the window from the first no-op
  started to the last delivery finished, i.e. the whole path from a job ending to its receiver
  answering. The notes split it: how fast the promoters queued the deliveries, and the deliveries'
  own window.

The reference is the ``system.noop`` drain rate of the same run (when the drain ran): what the
same worker does per second when a job does nothing, so the ratio says how much of a job's time
the email or the webhook itself takes. The sink and the receiver count what really arrived; a count
that does not match the status store is reported as a problem.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench import infra
from bench.config import BenchConfig, child_env, settings
from bench.drain import cpu_window, submit_all, worker_argv
from bench.procs import (
    Child,
    CpuMeter,
    CpuSnapshot,
    CpuUsage,
    free_port,
    limit_line,
    standard_groups,
    wait_http,
    wait_port,
    wait_quiet,
)
from bench.stats import percentile, steady_rate
from offload_email.worker import SPEC

POLL = 0.02
#: Recipients of each ``email.batch`` job.
BATCH_SIZE = 100
#: The queues the email worker serves in every run (the ``make up`` command line).
QUEUES = (*SPEC.queues, "system")
#: States a job of these runs should never be left in.
BAD_STATES = ("failed", "dead", "retrying", "running", "queued")

WELCOME = {"template": "welcome"}


@dataclass
class NotifyRun:
    """One measured run: ``units`` (emails, recipients or webhooks) delivered by ``jobs`` jobs."""

    name: str
    unit: str
    jobs: int
    units: int
    #: Worker threads in all (processes × threads).
    threads: int = 0
    enqueue_s: float = 0.0
    #: Units whose job succeeded, and the window they took (first start to last finish, from the records).
    delivered: int = 0
    window_s: float = 0.0
    steady_per_s: float = float("nan")
    cpu: CpuUsage | None = None
    #: Units finished inside the CPU window (from the first job running to the last succeeded).
    cpu_units: int = 0
    #: What the SMTP sink or the webhook receiver counted.
    received: dict[str, int] = field(default_factory=dict)
    problem: str | None = None
    redis_per_unit: str | None = None
    #: Where the time went, for the notes.
    phases: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Units per second over the window."""
        return self.delivered / self.window_s if self.window_s > 0 else float("nan")

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "name": self.name,
            "unit": self.unit,
            "jobs": self.jobs,
            "units": self.units,
            "enqueue_s": round(self.enqueue_s, 3),
            "delivered": self.delivered,
            "window_s": round(self.window_s, 3),
            "per_s": round(self.rate, 1),
            "steady_per_s": round(self.steady_per_s, 1),
            "cpu": self.cpu.as_dict() if self.cpu else None,
            "cpu_units": self.cpu_units,
            "received": self.received,
            "problem": self.problem,
            "redis_per_unit": self.redis_per_unit,
            "phases": self.phases,
        }


@dataclass
class NotifyResult:
    """The runs of one section (``email``: single and batch; ``webhooks``: one)."""

    runs: list[NotifyRun]


@dataclass(frozen=True)
class Times:
    """Wall-clock milliseconds from the records of the succeeded jobs of one type."""

    created: list[int]
    started: list[int]
    finished: list[int]


@dataclass
class Watched:
    """What polling the status store saw while the worker ran."""

    first: CpuSnapshot | None = None
    last: CpuSnapshot | None = None
    done_at_first: int = 0
    done: int = 0
    problem: str | None = None
    stats_before: dict[str, tuple[int, int]] = field(default_factory=dict)
    stats_after: dict[str, tuple[int, int]] = field(default_factory=dict)


# -- pieces ------------------------------------------------------------------------------------


def _deadline(units: int) -> float:
    """Seconds a run may take before it is given up (generous: 25 units/s)."""
    return 60 + units / 25


def worker_env(smtp_port: int = 1) -> dict[str, str]:
    """The email worker's environment: the bench's settings, the sink, no quota, rate limit or breaker."""
    return child_env(
        OFFLOAD_SMTP_HOST="127.0.0.1",
        OFFLOAD_SMTP_PORT=str(smtp_port),
        OFFLOAD_SMTP_RATE_PER_SECOND="0",
        OFFLOAD_EMAIL_QUOTA_PER_HOUR="0",
        OFFLOAD_URL_ALLOW_HOSTS="127.0.0.1",
        OFFLOAD_WEBHOOK_BREAKER_THRESHOLD="1000000",
    )


def submit(bodies: list[dict[str, Any]]) -> float:
    """Submit ``bodies`` with the SDK (no email quota, loopback callbacks allowed); returns the seconds.

    The email types are registered first as the worker registers them at boot (its
    ``OFFLOAD_EMAIL_QUOTA_PER_HOUR=0``), since the jobs are all queued before it starts.
    """
    from offload.publish import Publisher
    from offload.status.catalogue import ContractStore
    from offload.worker.app import served_contracts, spec_cards
    from offload.worker.registration import register
    from offload_email.settings import EmailSettings

    worker = EmailSettings(**{**settings().model_dump(), "email_quota_per_hour": 0})
    publisher = Publisher.from_settings(worker)
    try:
        register(ContractStore(publisher.store), spec_cards(SPEC, served_contracts(SPEC, worker)))
    finally:
        publisher.close()
    return submit_all(bodies, url_allow_hosts=["127.0.0.1"])


def start_server(cfg: BenchConfig, module: str, label: str) -> tuple[Child, int, Path]:
    """Start ``python -m bench.<module>`` on a free port; returns it, its port and its counts file."""
    port = free_port()
    out = cfg.logs / f"{label}-counts.json"
    argv = [sys.executable, "-m", f"bench.{module}", "--port", str(port), "--out", str(out)]
    child = Child(label, argv, env=child_env(), logs=cfg.logs)
    if module == "hook_receiver":
        wait_http(f"http://127.0.0.1:{port}/healthz", child, timeout=30)
    else:
        wait_port(port, child, timeout=30)
    return child, port, out


def stop_server(child: Child, out: Path) -> dict[str, int]:
    """Stop a server started by :func:`start_server` and read what it counted (empty if it wrote nothing)."""
    child.stop(timeout=10)
    try:
        counts: dict[str, int] = json.loads(out.read_text())
    except (OSError, ValueError):
        return {}
    return counts


def watch(
    worker: Child, meter: CpuMeter, client: redis.Redis, target: int, deadline_s: float, watched: Watched
) -> None:
    """Poll until ``target`` jobs succeeded (or the worker died, or the deadline passed).

    The CPU window opens when the first job is running and closes when the last one succeeded.
    """
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        watched.done, active = infra.count_in(client, "succeeded"), infra.count_in(client, "running")
        if watched.first is None and (active or watched.done):
            watched.first, watched.done_at_first = meter.snapshot(), watched.done
        if watched.done >= target:
            watched.last = meter.snapshot()
            watched.stats_after = infra.command_stats(client)
            return
        if not worker.alive():
            watched.problem = f"worker exited with {worker.proc.returncode}: {worker.tail(5)}"
            return
        time.sleep(POLL)
    watched.problem = f"timed out with {watched.done} of {target} succeeded"


def run_worker(cfg: BenchConfig, run: NotifyRun, target: int, env: dict[str, str], server: Child) -> Watched:
    """Start the email worker, watch it until ``target`` jobs succeeded, stop it.

    The CPU groups are the worker, the sink or receiver (``server``), RabbitMQ, Redis and the bench.
    """
    client = infra.redis_client()
    watched = Watched(stats_before=infra.command_stats(client))
    argv = worker_argv(cfg, "offload_email.worker:setup", "--queues", *QUEUES)
    worker = Child(f"worker-{run.name}", argv, env=env, logs=cfg.logs)
    server_group = "receiver" if run.unit == "webhook" else "sink"
    meter = CpuMeter(standard_groups(worker=worker.group, **{server_group: server.group}))
    try:
        watch(worker, meter, client, target, _deadline(run.units), watched)
    finally:
        worker.stop()
        client.close()
    return watched


def times(client: redis.Redis, job_type: str) -> Times:
    """The created, started and finished times of every succeeded job of ``job_type``."""
    ids = client.zrange(infra.index_key("succeeded", job_type), 0, -1)
    created: list[int] = []
    started: list[int] = []
    finished: list[int] = []
    for i in range(0, len(ids), 2000):
        pipe = client.pipeline(transaction=False)
        for job_id in ids[i : i + 2000]:
            pipe.hmget(infra.job_key(str(job_id)), "state", "created_at", "started_at", "finished_at")
        for state, made, start, finish in pipe.execute():
            if state == "succeeded" and made and start and finish:
                created.append(int(made))
                started.append(int(start))
                finished.append(int(finish))
    return Times(created, started, finished)


def left_over(client: redis.Redis) -> str | None:
    """Jobs left in a state other than ``succeeded``, if any."""
    counts = {state: infra.count_in(client, state) for state in BAD_STATES}
    bad = {state: count for state, count in counts.items() if count}
    return ", ".join(f"{count} {state}" for state, count in bad.items()) or None


def per_s(count: int, seconds: float) -> str:
    """``count ÷ seconds`` formatted like the table's rates (``n/a`` for no time)."""
    return f"{count / seconds:,.0f}" if seconds > 0 else "n/a"


def span_s(start: Sequence[int], end: Sequence[int]) -> float:
    """Seconds from the first of ``start`` to the last of ``end`` (0 if either is empty)."""
    return (max(end) - min(start)) / 1000 if start and end else 0.0


# -- the runs ----------------------------------------------------------------------------------


def _measure(
    cfg: BenchConfig,
    run: NotifyRun,
    bodies: list[dict[str, Any]],
    *,
    server_module: str,
    queue: str,
    target: int,
    finish: Callable[[NotifyRun, redis.Redis, Watched, dict[str, int]], None],
    url_path: str = "",
) -> NotifyRun:
    """The steps every run shares; ``finish`` reads the records and fills in the rate."""
    run.threads = cfg.processes * cfg.threads
    infra.reset()
    server, port, out = start_server(cfg, server_module, f"{server_module.replace('_', '-')}-{run.name}")
    watched: Watched | None = None
    try:
        if url_path:
            url = f"http://127.0.0.1:{port}{url_path}"
            bodies = [{**body, "options": {"callback_url": url}} for body in bodies]
        run.enqueue_s = submit(bodies)
        with infra.rabbit() as conn:
            queued = conn.wait_ready(queue, len(bodies), timeout=30)
        if queued == len(bodies):
            wait_quiet(run.name)
            smtp_port = port if server_module == "smtp_sink" else 1
            watched = run_worker(cfg, run, target, worker_env(smtp_port), server)
        else:
            run.problem = f"{queued} of {len(bodies)} messages queued"
    finally:
        run.received = stop_server(server, out)
    client = infra.redis_client()
    try:
        if watched is not None:
            run.problem = watched.problem or left_over(client)
            run.cpu = cpu_window(watched.first, watched.last)
            finish(run, client, watched, run.received)
    finally:
        client.close()
        infra.reset()
    return run


def _finish_email(run: NotifyRun, client: redis.Redis, watched: Watched, counts: dict[str, int]) -> None:
    per_job = run.units // run.jobs
    got = times(client, run.name)
    run.delivered = len(got.finished) * per_job
    run.window_s = span_s(got.started, got.finished)
    if per_job == 1:
        run.steady_per_s = steady_rate([f / 1000 for f in got.finished])
    run.cpu_units = (watched.done - watched.done_at_first) * per_job if watched.last else 0
    run.redis_per_unit = infra.per_unit(watched.stats_before, watched.stats_after, run.delivered)
    if counts.get("messages") != run.units and not run.problem:
        run.problem = f"the sink received {counts.get('messages')} of {run.units} messages"
    if got.started:
        ran = [f - s for s, f in zip(got.started, got.finished, strict=True)]
        run.phases.append(
            f"a job ran {percentile(ran, 50):,.0f} ms (p50) / {percentile(ran, 90):,.0f} ms (p90) from start to "
            f"finish ({percentile(ran, 50) / per_job:,.1f} ms per {run.unit} at p50) on "
            f"{run.threads} threads"
        )


def _finish_webhooks(run: NotifyRun, client: redis.Redis, watched: Watched, counts: dict[str, int]) -> None:
    noops = times(client, "system.noop")
    hooks = times(client, "webhook.deliver")
    run.delivered = len(hooks.finished)
    run.window_s = span_s(noops.started, hooks.finished)
    run.steady_per_s = steady_rate([f / 1000 for f in hooks.finished])
    # Deliveries finished inside the CPU window (it opens when the first no-op runs, before any delivery).
    run.cpu_units = max(0, watched.done - max(watched.done_at_first, run.jobs)) if watched.last else 0
    run.redis_per_unit = infra.per_unit(watched.stats_before, watched.stats_after, run.delivered)
    if counts.get("posts") != run.units and not run.problem:
        run.problem = f"the receiver answered {counts.get('posts')} of {run.units} deliveries"
    if not (noops.finished and hooks.finished):
        return
    noop_s = span_s(noops.started, noops.finished)
    queued_s = span_s(hooks.created, hooks.created)
    hooks_s = span_s(hooks.started, hooks.finished)
    first_queued = (min(hooks.created) - min(noops.finished)) / 1000
    waited = [s - c for s, c in zip(hooks.started, hooks.created, strict=True)]
    ran = [f - s for s, f in zip(hooks.started, hooks.finished, strict=True)]
    run.phases += [
        f"the no-ops ran over {noop_s:.2f} s ({per_s(len(noops.finished), noop_s)}/s); the promoters queued "
        f"the deliveries over {queued_s:.2f} s ({per_s(len(hooks.created), queued_s)}/s, the first "
        f"{first_queued:.2f} s after the first no-op ended); the deliveries ran over {hooks_s:.2f} s "
        f"({per_s(len(hooks.finished), hooks_s)}/s)",
        f"a delivery waited {percentile(waited, 50):,.0f} ms (p50) / {percentile(waited, 90):,.0f} ms (p90) "
        f"from queued to started and ran {percentile(ran, 50):,.0f} / {percentile(ran, 90):,.0f} ms "
        f"on {run.threads} threads",
    ]


def measure_email(cfg: BenchConfig) -> NotifyResult:
    """Single emails, then batches."""
    print(f">> email.send: {cfg.emails:,} emails", flush=True)
    bodies = [
        {"type": "email.send", "payload": {"to": [{"email": f"u{i}@example.com"}], **WELCOME, "vars": {"name": "U"}}}
        for i in range(cfg.emails)
    ]
    single = NotifyRun("email.send", "email", cfg.emails, cfg.emails)
    _measure(cfg, single, bodies, server_module="smtp_sink", queue="email", target=cfg.emails, finish=_finish_email)
    print(f"   {single.rate:,.0f} emails/s" + (f" ({single.problem})" if single.problem else ""), flush=True)
    print(f">> email.batch: {cfg.batches:,} × {BATCH_SIZE} recipients", flush=True)
    recipients = [{"email": f"u{i}@example.com", "vars": {"name": "U"}} for i in range(BATCH_SIZE)]
    bodies = [{"type": "email.batch", "payload": {**WELCOME, "recipients": recipients}}] * cfg.batches
    batch = NotifyRun("email.batch", "recipient", cfg.batches, cfg.batches * BATCH_SIZE)
    _measure(cfg, batch, bodies, server_module="smtp_sink", queue="email", target=cfg.batches, finish=_finish_email)
    print(f"   {batch.rate:,.0f} recipients/s" + (f" ({batch.problem})" if batch.problem else ""), flush=True)
    return NotifyResult([single, batch])


def measure_webhooks(cfg: BenchConfig) -> NotifyResult:
    """No-op jobs with a callback URL, until every delivery succeeded."""
    print(f">> webhooks: {cfg.webhooks:,} no-op jobs with a callback_url", flush=True)
    bodies = [{"type": "system.noop", "payload": {}}] * cfg.webhooks
    run = NotifyRun("webhook.deliver", "webhook", cfg.webhooks, cfg.webhooks)
    _measure(
        cfg,
        run,
        bodies,
        server_module="hook_receiver",
        queue="system",
        target=2 * cfg.webhooks,
        finish=_finish_webhooks,
        url_path="/hook",
    )
    print(f"   {run.rate:,.0f} webhooks/s" + (f" ({run.problem})" if run.problem else ""), flush=True)
    return NotifyResult([run])


def notes(result: NotifyResult) -> list[str]:
    """Per run: the figures, where the time went, and CPU per unit."""
    lines = []
    for run in result.runs:
        lines.append(
            f"{run.name}: {run.delivered:,} {run.unit}s in {run.window_s:.2f} s (first start → last finish)"
            + (f", steady {run.steady_per_s:,.0f}/s" if run.steady_per_s == run.steady_per_s else "")
            + f"; {run.jobs:,} jobs submitted in {run.enqueue_s:.1f} s; "
            + "received: "
            + (", ".join(f"{v:,} {k}" for k, v in run.received.items()) if run.received else "?")
        )
        lines += [f"{run.name}: {phase}" for phase in run.phases]
        if run.problem:
            lines.append(f"{run.name}: PROBLEM: {run.problem}")
        if run.redis_per_unit:
            lines.append(f"{run.name}: Redis per {run.unit}: {run.redis_per_unit}")
        if run.cpu and run.cpu_units:
            per_unit = run.cpu.accounted_cpu_seconds() / run.cpu_units * 1e6
            split = ", ".join(
                f"{name} {cores * run.cpu.wall / run.cpu_units * 1e6:,.0f}" for name, cores in run.cpu.groups.items()
            )
            lines.append(
                f"{run.name}: {limit_line(run.cpu)}; {per_unit:,.0f} µs CPU per {run.unit}, other excluded ({split} µs)"
            )
    return lines
