"""The status store at scale, beside BullMQ (issue 28): bytes per retained job, reads at 10k-1M, expiry.

What is measured, on the benchmark's Redis database:

- **bytes per retained job**: used_memory per succeeded and per failed ``system.noop`` record,
  written by the status store's own scripts (create, start, finish, as a worker does), beside
  BullMQ's bytes per completed and failed job (``bench/bullmq/scale.mjs``);
- **reads at each size** (10k, 100k, 1M retained succeeded jobs, of 2 tenants and 2 types, with
  some failed and running ones): the p99 of ``StatusStore.get`` and of the first page of
  ``StatusStore.list_jobs`` for every filter combination the API and the admin page offer (a
  tenant's or all tenants', by state, type, both, none; one that matches nothing), beside BullMQ's
  ``getJob`` and ``getJobs(['completed'], 0, 49)`` at the same size;
- **after a mass expiry** at the largest size (every succeeded record expired at once): the
  first page before the trim runs, the trim's time, the first page after;
- **the soak**: failed records first, then ``--scale-soak`` succeeded no-ops kept
  ``--scale-retention`` seconds, trimmed as the promoter does (every
  ``offload.worker.promoter.TRIM_INTERVAL``): how long until 90 % of their memory is back, while
  the failed ones still live (target: within retention + 5 minutes).

Records are written straight through the store's scripts, pipelined, not through RabbitMQ and a
worker: this measures the layout and its reads, not throughput (the drain measures that).
"""

from __future__ import annotations

import functools
import random
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from bench import infra, node
from bench.config import REDIS_PREFIX, REDIS_URL, BenchConfig
from bench.stats import percentile
from offload.status import JobState, Retention, StatusStore, now_ms
from offload.worker.promoter import TRIM_INTERVAL

TENANTS = ("bench", "other")
TYPES = ("system.noop", "system.sleep")
#: Pipelined script calls per round trip while filling.
FILL_BATCH = 2_000


@dataclass
class ScaleResult:
    """Everything the scale measurement found (see the module docstring)."""

    bytes_ours: dict[str, float] = field(default_factory=dict)
    bytes_bullmq: dict[str, float] = field(default_factory=dict)
    #: size -> measure -> p99 ms
    reads: dict[int, dict[str, float]] = field(default_factory=dict)
    bullmq_reads: dict[int, dict[str, float]] = field(default_factory=dict)
    expiry: dict[str, float] = field(default_factory=dict)
    soak: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Every figure, for the JSON."""
        return {
            "bytes_ours": self.bytes_ours,
            "bytes_bullmq": self.bytes_bullmq,
            "reads": {str(k): v for k, v in self.reads.items()},
            "bullmq_reads": {str(k): v for k, v in self.bullmq_reads.items()},
            "expiry": self.expiry,
            "soak": self.soak,
            "problems": self.problems,
        }


class Filler:
    """Writes finished job records through the status store's scripts, pipelined."""

    def __init__(self, store: StatusStore, client: redis.Redis) -> None:
        self.store = store
        self.client = client
        self.scripts = store.scripts.scripts

    def _call(self, pipe: Any, name: str, job_id: str, *args: str | int) -> None:
        pipe.evalsha(self.scripts[name].sha, 0, REDIS_PREFIX, job_id, now_ms(), *args)

    def _begin(self, pipe: Any, job_id: str, tenant: str, job_type: str, payload: str) -> None:
        """Queue the creation and start of one job on ``pipe``."""
        fields: list[str | int] = ["tenant", tenant, "type", job_type, "queue", "system", "priority", "normal"]
        fields += ["max_retries", 0, "created_at", now_ms(), "payload", payload]
        self._call(pipe, "create", job_id, "queued", "", "", "", 0, "", *fields)
        self._call(pipe, "start", job_id, 3, self.store.retention.failed * 1000)

    def ended(self, count: int, *, state: JobState, tenant: str = "bench", job_type: str = "system.noop") -> list[str]:
        """``count`` jobs created, started and ended in ``state``, as a worker would leave them."""
        ids: list[str] = []
        ttl = self.store.retention.ttl_ms(state)
        error = ("error", "ValueError: it failed, as asked") if state is not JobState.SUCCEEDED else ("", "")
        result = "{}" if state is JobState.SUCCEEDED else ""
        for offset in range(0, count, FILL_BATCH):
            batch = [str(uuid.uuid4()) for _ in range(min(FILL_BATCH, count - offset))]
            pipe = self.client.pipeline(transaction=False)
            for job_id in batch:
                self._begin(pipe, job_id, tenant, job_type, '{"echo":null}')
                self._call(pipe, "finish", job_id, 1, state.value, ttl, result, *error, "", "1")
            pipe.execute()
            ids += batch
        return ids

    def running(self, count: int, *, tenant: str = "bench", job_type: str = "system.sleep") -> list[str]:
        """``count`` jobs left running."""
        ids = [str(uuid.uuid4()) for _ in range(count)]
        pipe = self.client.pipeline(transaction=False)
        for job_id in ids:
            self._begin(pipe, job_id, tenant, job_type, '{"ms":1}')
        pipe.execute()
        return ids


def used_memory(client: redis.Redis) -> int:
    """Redis's ``used_memory`` now."""
    return int(client.info("memory")["used_memory"])


def p99_ms(call: Callable[[], object], probes: int) -> float:
    """The 99th percentile of ``call``'s time over ``probes`` calls, in milliseconds."""
    times = []
    for _ in range(probes):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return percentile(times, 99)


def _get_each(store: StatusStore, ids: Iterator[str]) -> object:
    return store.queries.get(next(ids))


def list_combinations(store: StatusStore) -> Iterator[tuple[str, Callable[[], object]]]:
    """Every list the API and the admin page offer, and one that matches nothing."""
    for owner, who in (("bench", "tenant"), (None, "admin")):
        yield f"list {who}", functools.partial(store.queries.list_jobs, tenant=owner)
        yield f"list {who} state", functools.partial(store.queries.list_jobs, tenant=owner, state=JobState.SUCCEEDED)
        yield f"list {who} type", functools.partial(store.queries.list_jobs, tenant=owner, job_type=TYPES[0])
        yield (
            f"list {who} state+type",
            functools.partial(store.queries.list_jobs, tenant=owner, state=JobState.FAILED, job_type=TYPES[0]),
        )
    yield (
        "list nothing matches",
        functools.partial(store.queries.list_jobs, tenant="bench", state=JobState.RUNNING, job_type=TYPES[0]),
    )


def bullmq(mode: str, jobs: int, probes: int = 200) -> dict[str, float]:
    """Run ``bench/bullmq/scale.mjs`` (installing BullMQ from its lock file first) and read its JSON."""
    node.ensure_installed()
    done = subprocess.run(
        ["node", str(node.BULLMQ / "scale.mjs"), REDIS_URL, mode, str(jobs), str(probes)],
        capture_output=True,
        text=True,
        check=True,
        timeout=7200,
    )
    return {k: float(v) for k, v in node.last_json(done.stdout).items()}


def measure_bytes(result: ScaleResult, jobs: int) -> None:
    """Bytes per retained succeeded and failed record, ours and BullMQ's."""
    client = infra.redis_client()
    store = StatusStore(client, prefix=REDIS_PREFIX)
    filler = Filler(store, client)
    for state in (JobState.SUCCEEDED, JobState.FAILED):
        infra.reset()
        time.sleep(1)
        before = used_memory(client)
        filler.ended(jobs, state=state)
        time.sleep(1)  # the fill's query buffers are freed before the figure is read
        result.bytes_ours[state.value] = (used_memory(client) - before) / jobs
    infra.reset()
    theirs = bullmq("bytes", jobs)
    result.bytes_bullmq = {"succeeded": theirs["bytes_per_completed"], "failed": theirs["bytes_per_failed"]}
    infra.reset()


def measure_reads(result: ScaleResult, sizes: tuple[int, ...], probes: int) -> None:
    """Read p99s at each size (ours, then BullMQ's), and the mass expiry at the largest."""
    client = infra.redis_client()
    store = StatusStore(client, prefix=REDIS_PREFIX, retention=Retention(succeeded=86_400, failed=7 * 86_400))
    filler = Filler(store, client)
    infra.reset()
    filler.ended(1_000, state=JobState.FAILED)
    filler.ended(200, state=JobState.FAILED, tenant="other", job_type="system.sleep")
    filler.running(50)
    have = 0
    ids: list[str] = []
    for size in sorted(sizes):
        grow = size - have
        # Mostly one tenant's no-ops, some of another tenant and type (as a busy deployment has).
        ids += filler.ended(grow * 9 // 10, state=JobState.SUCCEEDED)
        ids += filler.ended(grow - grow * 9 // 10, state=JobState.SUCCEEDED, tenant="other", job_type="system.sleep")
        have = size
        sample = random.sample(ids, min(probes, len(ids)))
        reads = {"get": p99_ms(functools.partial(_get_each, store, iter(sample)), len(sample))}
        for name, call in list_combinations(store):
            reads[name] = p99_ms(call, probes)
        result.reads[size] = reads
        print(f"   {size:,}: get {reads['get']:.2f} ms, worst list {max(reads.values()):.1f} ms", flush=True)
    largest = max(sizes)
    # Every succeeded record expires at once (as a day passing would do), before the trim runs.
    for offset in range(0, len(ids), 10_000):
        client.delete(*(infra.job_key(job_id) for job_id in ids[offset : offset + 10_000]))
    result.expiry["first page before trim p99 ms"] = p99_ms(lambda: store.queries.list_jobs(tenant="bench"), 20)
    started = time.perf_counter()
    later = now_ms() + 86_400_000 + 60_000  # the trim sees a day and a minute pass
    removed = store.janitor.trim_indexes(now=later, lock_ms=1)
    result.expiry["trim s"] = time.perf_counter() - started
    result.expiry["trim removed"] = float(removed or 0)
    result.expiry["first page after trim p99 ms"] = p99_ms(lambda: store.queries.list_jobs(tenant="bench"), probes)
    time.sleep(0.01)
    started = time.perf_counter()
    store.janitor.trim_indexes(now=later, lock_ms=1)
    result.expiry["trim idle s"] = time.perf_counter() - started
    print(
        f"   expiry of {largest:,}: trim {result.expiry['trim s']:.2f} s, "
        f"first page {result.expiry['first page after trim p99 ms']:.1f} ms",
        flush=True,
    )
    infra.reset()
    for size in sorted(sizes):
        result.bullmq_reads[size] = bullmq("fill", size, probes)
    infra.reset()


def measure_soak(result: ScaleResult, jobs: int, retention: int) -> None:
    """Failed records first, then ``jobs`` succeeded ones kept ``retention`` s; time until 90 % is back."""
    client = infra.redis_client()
    store = StatusStore(client, prefix=REDIS_PREFIX, retention=Retention(succeeded=retention, failed=7 * 86_400))
    filler = Filler(store, client)
    infra.reset()
    filler.ended(10_000, state=JobState.FAILED)
    time.sleep(1)  # the fill's query buffers are freed, so that they count in neither figure
    base = used_memory(client)
    filled_at = time.monotonic()
    filler.ended(jobs, state=JobState.SUCCEEDED)
    time.sleep(1)
    grown = used_memory(client) - base
    result.soak["succeeded bytes"] = float(grown)
    limit = retention + 300.0
    next_trim = time.monotonic()
    back = float("nan")
    while time.monotonic() - filled_at < limit:
        if time.monotonic() >= next_trim:
            store.janitor.trim_indexes(lock_ms=1)
            next_trim += TRIM_INTERVAL
        freed = base + grown - used_memory(client)
        if freed >= 0.9 * grown:
            back = time.monotonic() - filled_at
            break
        time.sleep(1)
    result.soak["seconds to 90% back"] = back
    result.soak["index entries left"] = float(sum(client.zcard(infra.index_key("succeeded", t)) for t in TYPES))
    result.soak["retention s"] = float(retention)
    failed_left = sum(client.zcard(infra.index_key("failed", t)) for t in TYPES)
    result.soak["failed still listed"] = float(failed_left)
    if back != back:
        result.problems.append(f"soak: 90% of the memory was not back within {limit:.0f} s")
    infra.reset()


def measure(cfg: BenchConfig) -> ScaleResult:
    """The whole scale measurement (see the module docstring)."""
    result = ScaleResult()
    print(f">> bytes per retained job ({cfg.scale_bytes_jobs:,} each)", flush=True)
    measure_bytes(result, cfg.scale_bytes_jobs)
    print(f">> reads at {', '.join(f'{s:,}' for s in cfg.scale_sizes)}", flush=True)
    measure_reads(result, cfg.scale_sizes, cfg.probes)
    print(f">> soak: {cfg.scale_soak:,} succeeded kept {cfg.scale_retention} s", flush=True)
    measure_soak(result, cfg.scale_soak, cfg.scale_retention)
    return result


def notes(result: ScaleResult) -> list[str]:
    """What the table cannot say."""
    found = [
        "scale: records are written through the status store's scripts (pipelined), reads timed through "
        "StatusStore (Redis round trips and decoding, no HTTP); BullMQ's through its own Queue API from Node",
    ]
    found += [f"scale: {problem}" for problem in result.problems]
    return found
