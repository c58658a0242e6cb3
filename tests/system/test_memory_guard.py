"""The worker memory guard: a process past OFFLOAD_WORKER_MAX_MEMORY_MB after a job is recycled once,
gracefully, and no job is lost (issue 10)."""

from __future__ import annotations

import time
from pathlib import Path

from offload.publish import Publisher
from offload.worker.memory_guard import MemoryGuard
from tests.helpers import VENV_BIN, children, spawn, stop, wait_for
from tests.support import AMQP_URL, REDIS_URL, make_settings
from tests.system.hog_worker import REGISTRY
from tests.system.stack import stack_env

LIMIT_MB = 250


def _rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def test_a_worker_past_its_memory_limit_is_recycled_once_gracefully_and_loses_nothing(
    redis_client, clean_broker, logs: Path
) -> None:
    env = stack_env(AMQP_URL, REDIS_URL, OFFLOAD_WORKER_MAX_MEMORY_MB=str(LIMIT_MB))
    log = logs / "hog-worker.log"
    args = [str(VENV_BIN / "dramatiq"), "tests.system.hog_worker:setup", "--queues", "system"]
    process = spawn(
        [*args, "--processes", "1", "--threads", "2", "--worker-shutdown-timeout", "30000"], env=env, log=log
    )
    publisher = Publisher.from_settings(make_settings(), registry=REGISTRY)
    try:
        wait_for(lambda: "ready for action" in log.read_text(), timeout=30)
        (first_child,) = children(process.pid)
        slow = [publisher.publish("system.sleep", {"ms": 1500, "steps": 3}, tenant="acme").job_id]
        time.sleep(0.3)  # running when the recycle starts: it must finish, not be cut short
        hog = publisher.publish("system.hog", {"mb": LIMIT_MB + 100}, tenant="acme").job_id
        others = [publisher.publish("system.noop", {}, tenant="acme").job_id for _ in range(30)]

        def ended(job_id: str) -> bool:
            record = publisher.get(job_id)
            return record is not None and record.state == "succeeded"

        wait_for(lambda: all(ended(j) for j in [hog, *slow, *others]), timeout=60, interval=0.2)
        wait_for(lambda: log.read_text().count("ready for action") >= 2, timeout=30)
        text = log.read_text()
        assert text.count("recycling it gracefully") == 1, text[-3000:]
        assert process.poll() is None  # the main process stayed; it replaced its worker process
        (second_child,) = children(process.pid)
        assert second_child != first_child and _rss_mb(second_child) < LIMIT_MB
        records = [publisher.get(j) for j in [hog, *slow, *others]]
        assert all(r is not None and r.attempts == 1 for r in records)  # nothing cut short or redone
    finally:
        stop(process, timeout=40)
        publisher.close()


def test_the_guard_recycles_once_and_only_past_the_limit() -> None:
    used = [100 * 1024 * 1024]
    recycles: list[str] = []
    guard = MemoryGuard(limit_mb=150, measure=lambda: used[0], recycle=lambda: recycles.append("hup"))
    guard.after_process_message(None, None)
    assert recycles == []
    used[0] = 200 * 1024 * 1024
    guard.after_process_message(None, None)
    guard.after_process_message(None, None)
    assert recycles == ["hup"]
    off = MemoryGuard(limit_mb=0, measure=lambda: 10**12, recycle=lambda: recycles.append("off"))
    off.after_process_message(None, None)
    assert recycles == ["hup"]
