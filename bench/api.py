"""Measurement 1: ``POST /v1/jobs`` throughput and latency, beside a no-op endpoint on the same server and
beside Fastify + BullMQ.

Both servers are gunicorn with 2 gevent workers, gevent patched first, configured by
``offload_api.gunicorn_conf``, bound to a free loopback port. The real one is the ``offload-api``
console script: every request authenticates with a real API key, validates the submission, writes
the job record to Redis and publishes the message to RabbitMQ, answering 202 only after the broker
confirmed it. No worker runs, so the API is measured alone (the ``system`` queue just fills up).
The ceiling is :mod:`bench.noop_app` served the same way. The anchor is ``bench/bullmq/server.mjs``:
one Node process with Fastify, whose ``POST /jobs`` validates the same body against a JSON schema on
the route and calls BullMQ's ``queue.add``, answering 202 with the job's id (it checks no API key;
wrk sends the same request, header included, to all three).

Load: ``wrk -t2 -c32`` with a Lua script that counts status codes, so the 202 count is verified and
every other answer is reported. One warm-up run (not measured) precedes each measured run. wrk runs
on the same two cores as the servers, RabbitMQ and Redis; the CPU notes say how much it took.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from bench import infra, node
from bench.config import API_KEY, BenchConfig, child_env
from bench.load import LoadResult, ensure_wrk, run_load
from bench.procs import (
    Child,
    CpuMeter,
    CpuUsage,
    connections_by_process,
    free_port,
    limit_line,
    standard_groups,
    wait_http,
    wait_quiet,
)

BODY = json.dumps({"type": "system.noop", "payload": {}}, separators=(",", ":"))


@dataclass
class ServerRun:
    """One server's measured load run."""

    name: str
    load: LoadResult
    cpu: CpuUsage
    #: Messages found in the ``system`` queue afterwards, against the 202s given (real API only).
    queued: int | None = None
    accepted_total: int | None = None
    #: Keep-alive connections each gunicorn worker held halfway through the run.
    connections: list[int] | None = None
    #: Redis commands and server time per request during the measured run.
    redis_per_request: str | None = None

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        load = self.load
        return {
            "tool": load.tool,
            "requests": load.requests,
            "seconds": round(load.seconds, 3),
            "statuses": {str(k): v for k, v in load.statuses.items()},
            "socket_errors": load.socket_errors,
            "accepted_per_s": round(load.rate(202), 1),
            "p50_ms": round(load.p50_ms, 2),
            "p90_ms": round(load.p90_ms, 2),
            "p99_ms": round(load.p99_ms, 2),
            "max_ms": round(load.max_ms, 2),
            "cpu": self.cpu.as_dict(),
            "queued_after": self.queued,
            "accepted_including_warmup": self.accepted_total,
            "connections_per_worker": self.connections,
            "redis_per_request": self.redis_per_request,
        }


@dataclass
class ApiResult:
    """The API beside its no-op ceiling."""

    ours: ServerRun
    noop: ServerRun
    concurrency: int
    #: Fastify + BullMQ (None: it could not be measured; see ``bullmq_problem``).
    bullmq: ServerRun | None = None
    bullmq_problem: str | None = None

    @property
    def ratio(self) -> float:
        """Accepted/s of the API ÷ the no-op endpoint's 202/s."""
        ceiling = self.noop.load.rate(202)
        return self.ours.load.rate(202) / ceiling if ceiling else float("nan")

    @property
    def bullmq_ratio(self) -> float:
        """Accepted/s of the API ÷ Fastify + BullMQ's (NaN if that did not run)."""
        theirs = self.bullmq.load.rate(202) if self.bullmq else 0.0
        return self.ours.load.rate(202) / theirs if theirs else float("nan")

    def runs(self) -> list[ServerRun]:
        """Every server measured: ours, the no-op, Fastify + BullMQ (if it ran)."""
        return [self.ours, self.noop] + ([self.bullmq] if self.bullmq else [])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _loaded(
    cfg: BenchConfig, wrk: str | None, url: str, server: Child, api_key: str | None
) -> tuple[LoadResult, CpuUsage, int, list[int], str]:
    """Warm up, then measure, with CPU accounting.

    Returns the result, its CPU, the warm-up's 202s and the connections each gunicorn worker held
    halfway through (gunicorn's arbiter holds none; its workers share the listening socket, and a
    keep-alive connection stays with the worker that accepted it).
    """
    warm = run_load(wrk, url, body=BODY, api_key=api_key, concurrency=cfg.concurrency, seconds=cfg.warmup)
    meter = CpuMeter(standard_groups(server=server.group))
    port = int(url.split(":")[2].split("/")[0])
    held: list[int] = []

    def count_connections() -> None:
        workers = [pid for pid in server.group() if pid != server.pid]
        held.extend(sorted(connections_by_process(workers, port).values(), reverse=True))

    timer = threading.Timer(cfg.duration / 2, count_connections)
    client = infra.redis_client()
    stats_before = infra.command_stats(client)
    before, children_before = meter.snapshot(), _children_cpu()
    timer.start()
    load = run_load(wrk, url, body=BODY, api_key=api_key, concurrency=cfg.concurrency, seconds=cfg.duration)
    after, children_after = meter.snapshot(), _children_cpu()
    timer.cancel()
    redis_line = infra.per_unit(stats_before, infra.command_stats(client), load.requests)
    client.close()
    usage = CpuMeter.usage(before, after)
    if wrk:  # wrk is a reaped child: its CPU shows in RUSAGE_CHILDREN, not in a live group
        wrk_cores = (children_after - children_before) / usage.wall
        usage = replace(usage, groups={**usage.groups, "wrk": wrk_cores}, other=max(0.0, usage.other - wrk_cores))
    return load, usage, warm.count(202), held, redis_line


def _check_one(url: str) -> None:
    """POST once to ``url`` and insist on a 202, so a misconfiguration shows its error body instead of a rate.

    Raises:
        RuntimeError: the answer was not 202.
    """
    request = urllib.request.Request(
        url,
        data=BODY.encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status == 202:
                return
            raise RuntimeError(f"POST {url} answered {response.status}: {response.read()[:500]!r}")
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"POST {url} answered {exc.code}: {exc.read()[:500]!r}") from None


def measure_noop(cfg: BenchConfig, wrk: str | None) -> ServerRun:
    """Load the no-op app served by gunicorn/gevent exactly like the API."""
    port = free_port()
    server = Child(
        "noop-server",
        [sys.executable, "-m", "bench.noop_server", "--bind", f"127.0.0.1:{port}"],
        env=child_env(),
        logs=cfg.logs,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", server)
        wait_quiet("API no-op")
        load, usage, _, held, _ = _loaded(cfg, wrk, f"http://127.0.0.1:{port}/v1/jobs", server, None)
    finally:
        server.stop()
    return ServerRun("no-op", load, usage, connections=held)


def measure_ours(cfg: BenchConfig, wrk: str | None) -> ServerRun:
    """Load the real ``offload-api`` with no worker running."""
    infra.reset()
    port = free_port()
    launcher = str(Path(sys.executable).parent / "offload-api")
    server = Child("offload-api", [launcher, "--bind", f"127.0.0.1:{port}"], env=child_env(), logs=cfg.logs)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", server)
        url = f"http://127.0.0.1:{port}/v1/jobs"
        _check_one(url)
        wait_quiet("API offload-api")
        load, usage, warm_accepted, held, redis_line = _loaded(cfg, wrk, url, server, API_KEY)
    finally:
        server.stop()
    accepted_total = 1 + warm_accepted + load.count(202)
    with infra.rabbit() as conn:
        queued = conn.ready("system")
    infra.reset()
    return ServerRun(
        "offload-api",
        load,
        usage,
        queued=queued,
        accepted_total=accepted_total,
        connections=held,
        redis_per_request=redis_line,
    )


def measure_bullmq(cfg: BenchConfig, wrk: str | None) -> ServerRun:
    """Load Fastify + BullMQ (``bench/bullmq/server.mjs``) exactly like the API.

    ``queued`` is the jobs the server says it added, ``accepted_total`` the 202s seen.

    Raises:
        RuntimeError: it did not start, refused the first job, or the load failed.
    """
    node.ensure_installed()
    infra.reset()
    port = free_port()
    server = node.start(cfg, "fastify-bullmq", "server.mjs", port)
    added = None
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", server)
        url = f"http://127.0.0.1:{port}/jobs"
        _check_one(url)
        wait_quiet("API fastify-bullmq")
        load, usage, warm_accepted, _, redis_line = _loaded(cfg, wrk, url, server, API_KEY)
    finally:
        server.stop()
        try:
            added = int(node.last_json(server.tail(5))["added"])
        except (ValueError, KeyError):
            added = None
        node.remove_keys()
        infra.reset()
    return ServerRun(
        "fastify-bullmq",
        load,
        usage,
        queued=added,
        accepted_total=1 + warm_accepted + load.count(202),
        redis_per_request=redis_line,
    )


def measure(cfg: BenchConfig) -> ApiResult:
    """The no-op ceiling, the real API, then Fastify + BullMQ (one measured run each).

    Fastify + BullMQ breaking is noted in the result, not raised: the API's own rows still stand.
    """
    wrk = ensure_wrk()
    if wrk is None:
        print(">> wrk is unavailable; using the Python load driver (lower bounds)", flush=True)
    noop = measure_noop(cfg, wrk)
    ours = measure_ours(cfg, wrk)
    bullmq, problem = None, None
    try:
        bullmq = measure_bullmq(cfg, wrk)
    except RuntimeError as exc:
        problem = str(exc)
    return ApiResult(ours=ours, noop=noop, concurrency=cfg.concurrency, bullmq=bullmq, bullmq_problem=problem)


def notes(result: ApiResult) -> list[str]:
    """What limited each run, and whether the 202s add up."""
    lines = []
    for run in result.runs():
        rate = run.load.rate(202)
        per_request = run.cpu.accounted_cpu_seconds() / max(1, run.load.requests) * 1e6
        lines.append(
            f"API {run.name}: {limit_line(run.cpu)}; {per_request:,.0f} µs CPU per request (other excluded)"
            f" ({rate:,.0f} 202/s, load by {run.load.tool})"
        )
    if result.bullmq_problem:
        lines.append(f"API fastify-bullmq: PROBLEM: {result.bullmq_problem}")
    for run in result.runs():
        if run.redis_per_request:
            lines.append(f"API {run.name}: Redis per request: {run.redis_per_request}")
        if run.queued is not None and run.accepted_total is not None:
            # wrk stops with up to one request in flight per connection, which the server still accepts.
            extra = run.queued - run.accepted_total
            slack = 2 * result.concurrency  # the warm-up run and the measured run
            verdict = (
                "matches"
                if extra == 0
                else f"{extra} more: requests in flight when the load stopped (at most {slack})"
                if 0 < extra <= slack
                else "DOES NOT MATCH"
            )
            where = "messages in the queue" if run.name == "offload-api" else "jobs added, by the server's count,"
            lines.append(
                f"API {run.name}: {run.accepted_total:,} answers 202 seen (warm-up included), "
                f"{run.queued:,} {where} afterwards: {verdict}"
            )
    noop = result.noop.load
    if noop.p50_ms > 0 and noop.p99_ms > 10 * noop.p50_ms:
        lines.append(
            f"API no-op: latency is heavy-tailed at saturation (p99 {noop.p99_ms / noop.p50_ms:,.0f}× p50: some "
            "keep-alive connections wait long while others are served at once), so its p99 is no floor for ours; "
            "compare throughput"
        )
    for run in result.runs():
        load = run.load
        spread = "/".join(str(n) for n in run.connections) if run.connections else "?"
        lines.append(
            f"API {run.name}: latency p90 {load.p90_ms:.1f} ms, max {load.max_ms:.1f} ms"
            + (f"; keep-alive connections per gunicorn worker mid-run: {spread}" if run.connections is not None else "")
        )
    return lines
