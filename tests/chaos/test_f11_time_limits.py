"""F11: jobs that overstay their time limit.

(a) A pure-Python loop is interrupted by the time limit: ``timed_out`` within limit + 1 s.
(b) A job blocked in C cannot be interrupted; the hard limit ends its worker process within
    limit + grace + 5 s, the supervisor starts it again, the job is quarantined ``dead`` after 3
    such ends instead of looping, and the other jobs of the run all complete.
(c) No contract may have a time limit (plus the grace) at or above ``consumer_timeout``, so the
    broker never takes a running job back (the #827 loop): startup refuses it
    (reliability-security.md §6.1 F11).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis

from offload.contracts import JobContract, RetryPolicy
from offload.errors import ConfigError
from offload.jobs import JobType, WorkerSpec
from offload.publish import Publisher
from tests.chaos.harness import SCALE, TENANT, assert_common, drain
from tests.chaos.ledger import Ledger, report
from tests.chaos.stuck_worker import BLOCKED, BUSY, REGISTRY, Stuck
from tests.helpers import VENV_BIN, spawn, stop, wait_for
from tests.support import AMQP_URL, REDIS_URL, make_settings
from tests.system.stack import stack_env

GRACE = 2


def _record(client: redis.Redis, job_id: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in client.hgetall(f"offload:job:{job_id}").items()}


def test_f11_overstaying_jobs_are_interrupted_or_their_process_ended_and_quarantined(
    redis_client, clean_broker, logs: Path
) -> None:
    env = stack_env(AMQP_URL, REDIS_URL, OFFLOAD_HARD_LIMIT_GRACE=str(GRACE))
    args = [str(VENV_BIN / "dramatiq"), "tests.chaos.stuck_worker:setup", "--queues", "system", "--threads", "4"]
    args += ["--processes", "1"]
    logs_seen: list[Path] = []

    def start() -> subprocess.Popen[bytes]:
        log = logs / f"stuck-worker-{time.monotonic_ns()}.log"
        logs_seen.append(log)
        process = spawn(args, env=env, log=log)
        wait_for(lambda: "ready for action" in log.read_text(), timeout=30, message=lambda: log.read_text()[-2000:])
        return process

    publisher = Publisher.from_settings(make_settings(), registry=REGISTRY)
    client = redis.Redis.from_url(REDIS_URL)
    ledger = Ledger()

    def submit(job_type: str) -> str:
        job_id = publisher.publish(job_type, {}, tenant=TENANT).job_id
        ledger.record(f"f11-{uuid.uuid4().hex}", 202, job_id)
        return job_id

    process = start()
    try:
        # (a) interrupted in Python.
        busy = submit(BUSY.name)
        wait_for(lambda: _record(client, busy).get("state") == "failed", timeout=15)
        record = _record(client, busy)
        busy_s = (int(record["finished_at"]) - int(record["started_at"])) / 1000
        # Dramatiq's TimeLimit looks once a second, so the interrupt comes 0-1 s after the limit.
        assert record["error_code"] == "timed_out" and busy_s <= BUSY.time_limit + 1.5, record
        # (b) blocked in C, among ordinary jobs.
        blocked = submit(BLOCKED.name)
        others = [submit("system.noop") for _ in range(20 * SCALE)]
        ends: list[float] = []
        while _record(client, blocked).get("state") != "dead" and len(ends) < 5:
            wait_for(
                lambda: process.poll() is not None or _record(client, blocked).get("state") == "dead",  # noqa: B023
                timeout=BLOCKED.time_limit + GRACE + 30,
            )
            if _record(client, blocked).get("state") == "dead":
                break
            # From this attempt's start to the process's end.
            ends.append(time.time() - int(_record(client, blocked)["started_at"]) / 1000)
            process = start()
        verdict = drain(ledger, client, timeout=60)
        report(
            "F11",
            verdict,
            double_effects=0,
            recovery_s=max(ends) if ends else None,
            faults=len(ends) + 1,
            busy_timed_out_s=round(busy_s, 1),
            hard_limit_ends=len(ends),
        )
        assert_common(verdict)
        assert _record(client, blocked)["state"] == "dead"
        assert 1 <= len(ends) <= 3 and max(ends) <= BLOCKED.time_limit + GRACE + 5, ends
        assert all(_record(client, job_id)["state"] == "succeeded" for job_id in others)
        assert any("ran 2 s past its time limit" in log.read_text() for log in logs_seen)
    finally:
        stop(process)
        publisher.close()


def test_f11c_a_contract_whose_limit_reaches_consumer_timeout_is_refused_at_startup(servers) -> None:
    settings = make_settings(consumer_timeout=600, hard_limit_grace=30)
    too_long = JobContract(
        name="system.too_long",
        queue="system",
        payload=Stuck,
        description="Would outlive the broker's patience.",
        time_limit=580,
        retry=RetryPolicy(max_retries=0),
    )
    with pytest.raises(ConfigError, match="OFFLOAD_CONSUMER_TIMEOUT"):
        WorkerSpec(name="too-long", jobs=(JobType(too_long, lambda ctx, payload: None),)).build(settings)
