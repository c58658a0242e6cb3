"""F1: SIGKILL worker processes mid-job, repeatedly; then the whole worker. Nothing is lost, every
re-run is marked, consumption resumes (reliability-security.md §6.1).

The default suite runs a small volume; ``make chaos`` sets ``OFFLOAD_CHAOS_SCALE`` for the full one.
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

from tests.chaos.ledger import Ledger, check, finished, report, seconds_until_progress, succeeded_twice
from tests.helpers import children, wait_for
from tests.support import REDIS_URL
from tests.system.stack import Api, Worker

SCALE = int(os.environ.get("OFFLOAD_CHAOS_SCALE", "1"))
JOBS = 150 * SCALE
TENANT = "acme"


def _supervise(worker: Worker) -> None:
    """Start the worker again if it exited (what systemd, compose or Kubernetes would do)."""
    if worker.process is None or worker.process.poll() is not None:
        worker.start()


def _submit(api: Api, ledger: Ledger, key: str) -> None:
    body = {"type": "system.sleep", "payload": {"ms": 100, "steps": 2}}
    try:
        status, _, answer = api.request("POST", "/v1/jobs", body, headers={"Idempotency-Key": key}, timeout=5)
    except OSError:
        ledger.record(key, None, None)
        return
    ledger.record(key, status, answer.get("id") if isinstance(answer, dict) else None)


def test_f1_worker_processes_killed_mid_job_lose_nothing_and_mark_every_rerun(env, logs: Path) -> None:
    api = Api(env, logs)
    worker = Worker(env, logs, domain="email", threads=4, processes=2)
    ledger = Ledger()
    client = redis.Redis.from_url(REDIS_URL)
    rng = random.Random(1)
    kills = 0
    recoveries: list[float] = []
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: _submit(api, ledger, f"f1-{i}-{uuid.uuid4().hex[:6]}"), range(JOBS)))
        assert len(ledger.accepted) == JOBS
        for _ in range(2 * SCALE):  # kill one worker process mid-job; the test is the supervisor
            time.sleep(rng.uniform(0.5, 1.5))
            _supervise(worker)
            assert worker.process is not None
            os.kill(rng.choice(children(worker.process.pid)), signal.SIGKILL)
            kills += 1
            # Dramatiq's main process stops the others when one dies (dramatiq#260: no main process
            # left alive without consumers); the supervisor starts it again.
            wait_for(lambda: worker.process is not None and worker.process.poll() is not None, timeout=30)
            _supervise(worker)
            recoveries.append(seconds_until_progress(lambda: finished(ledger, client), total=JOBS, timeout=30))
        time.sleep(rng.uniform(0.3, 1.0))
        worker.kill()  # and once the whole worker, main process and children
        kills += 1
        worker.start()
        recoveries.append(seconds_until_progress(lambda: finished(ledger, client), total=JOBS, timeout=30))
        wait_for(lambda: not check(ledger, client, tenant=TENANT).lost, timeout=120 * SCALE, interval=1)
        verdict = check(ledger, client, tenant=TENANT)
        # The sleep jobs' only effect is their own record: a double effect would be a second
        # "succeeded" in one job's history.
        doubles = len(succeeded_twice(ledger, client))
        report("F1", verdict, double_effects=doubles, recovery_s=max(recoveries), faults=kills)
        assert doubles == 0
        assert max(recoveries) <= 10  # consumption resumes within 10 s of every kill
        assert verdict.lost == [] and verdict.unexpected == [] and verdict.unmarked_duplicates == []
        assert verdict.duplicated <= 4 * kills  # at most the jobs running at each kill (4 threads)
        assert verdict.terminal == {"succeeded": JOBS} or set(verdict.terminal) <= {"succeeded", "dead"}
    finally:
        api.stop()
        worker.stop()
