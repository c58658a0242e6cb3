"""Concurrency limits per key (issue 10): 20 reports of one tenant with a limit of 1 never overlap,
all succeed, and a worker killed while holding the slot does not keep it past its lease."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from offload.settings import Settings
from offload.status import StatusStore
from offload.status.slots import Slots
from tests.http_source import Source
from tests.support import REDIS_URL, make_settings
from tests.system.stack import Api, Worker

REPORTS = 20


def _report(source: Source) -> dict[str, object]:
    return {
        "type": "report.build",
        "payload": {
            "title": "Orders",
            "columns": [{"name": "name"}, {"name": "qty", "type": "integer"}],
            "source": {"url": source.url("/orders.ndjson"), "format": "ndjson"},
            "output": "csv",
        },
    }


def _times(client: redis.Redis, job_id: str) -> tuple[int, int, str]:
    started, finished, state = client.hmget(f"offload:job:{job_id}", "started_at", "finished_at", "state")
    return int(started or 0), int(finished or 0), (state or b"").decode()


def test_twenty_reports_of_one_tenant_with_limit_1_never_overlap_and_a_dead_holder_frees_its_slot(
    env: dict[str, str], logs: Path, tmp_path: Path, source: Source
) -> None:
    source.body, source.drip_seconds = b'{"name": "a", "qty": 1}\n' * 6, 0.002  # ~0.3 s a report
    env = {
        **env,
        "OFFLOAD_STORAGE_DIR": str(tmp_path / "storage"),
        "OFFLOAD_CONCURRENCY_LIMITS": "report.build:tenant=1",
    }
    api = Api(env, logs)
    workers = [Worker(env, logs, domain="reports", threads=4) for _ in range(2)]  # 8 threads could overlap
    client = redis.Redis.from_url(REDIS_URL)
    slots_key = "offload:slots:report.build:tenant|acme"
    try:
        ids = [api.request("POST", "/v1/jobs", _report(source))[2]["id"] for _ in range(REPORTS)]
        # Kill the worker holding the slot, mid-report; the other worker stays.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not client.zcard(slots_key):
            time.sleep(0.01)
        holder = client.zrange(slots_key, 0, -1)[0].decode()
        killed_at = time.time() * 1000
        for worker in workers:
            worker.kill()
        lease_end = max(float(score) for score in client.zmscore(slots_key, [holder]) if score is not None)
        assert lease_end <= killed_at + Slots(StatusStore(client)).lease_ms + 100  # not renewed past one lease
        for worker in workers:
            worker.start()  # the held job is redelivered and keeps its own slot; the rest wait their turn

        def done() -> bool:
            return all(_times(client, job_id)[2] == "succeeded" for job_id in ids)

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not done():
            time.sleep(0.2)
        runs = sorted(_times(client, job_id) for job_id in ids)
        assert done(), [r[2] for r in runs]
        overlaps = [(a, b) for a, b in zip(runs, runs[1:], strict=False) if b[0] < a[1]]
        assert overlaps == [], overlaps  # each started after the previous one finished
        assert holder in ids and client.zcard(slots_key) == 0
    finally:
        api.stop()
        for worker in workers:
            worker.stop()


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [("report.build:tenant=1", {"report.build:tenant": 1}), ("a=2, b:x=3", {"a": 2, "b:x": 3}), ("", {})],
)
def test_concurrency_limits_parse(raw: str, parsed: dict[str, int]) -> None:
    assert make_settings(concurrency_limits=raw).concurrency_limits == parsed


@pytest.mark.parametrize("raw", ["report.build", "a=0", "a=x", "=1"])
def test_a_malformed_concurrency_limit_is_refused_naming_it(raw: str) -> None:
    with pytest.raises(ValueError, match="expected name=N"):
        Settings(concurrency_limits=raw)
