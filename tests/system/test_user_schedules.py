"""Issue 22, must-show 2 (processes): a schedule made over the API is fired by real ``offload-scheduler``
processes, once per tick with two of them running, pauses and resumes, and keeps firing after the
active scheduler is SIGKILLed and the standby takes over.

Each run's job id is derived from the schedule and its tick, so "once per tick" is checked on the
broker too: the queue holds exactly one message per job, and each job is one tick.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import redis

from offload.contracts import SYSTEM_QUEUE
from offload.publish import Publisher
from offload.scheduler import user_run_id
from tests.helpers import VENV_BIN, kill_tree, spawn, stop, wait_for
from tests.support import REDIS_URL, Api, queue_depth

LOCK = "offload:scheduler:leader"


def test_a_schedule_made_over_the_api_fires_once_per_tick_pauses_resumes_and_survives_a_failover(
    env: dict[str, str], logs: Path, api: Api, publisher: Publisher
) -> None:
    env = {**env, "OFFLOAD_SCHEDULER_LOCK_TTL": "2"}
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    names = "ab"
    processes = [spawn([str(VENV_BIN / "offload-scheduler")], env=env, log=logs / f"scheduler-{n}.log") for n in names]
    try:
        wait_for(lambda: client.get(LOCK) is not None, timeout=20)
        body = {"name": "every second", "interval": 1, "missed": "run_all", "job": {"type": "system.noop"}}
        made = api.post("/v1/schedules", json=body).get_json()
        anchor = datetime.fromisoformat(made["created_at"])
        tick_of = {user_run_id(made["id"], anchor + timedelta(seconds=n)): n for n in range(1, 600)}

        def ticks() -> list[int]:
            jobs = publisher.store.queries.list_jobs(tenant="acme", limit=500).records
            assert all(job.id in tick_of and job.type == "system.noop" for job in jobs)
            return sorted(tick_of[job.id] for job in jobs)

        # It fires within its interval, with both schedulers running: one job and one message per tick.
        wait_for(lambda: len(ticks()) >= 3, timeout=15)
        paused = api.post(f"/v1/schedules/{made['id']}/pause").get_json()
        assert paused["paused"] is True
        time.sleep(2.5)  # a fire already under way when the pause landed may still finish
        before = ticks()
        assert before == list(range(1, len(before) + 1))  # every tick so far, none twice, none skipped
        time.sleep(3)
        assert ticks() == before  # paused: no fire in three intervals
        shown = api.get(f"/v1/schedules/{made['id']}").get_json()
        assert shown["last_run"]["job_id"] == next(i for i, n in tick_of.items() if n == before[-1])
        # Resumed: it fires again from its next tick (the paused ones are not owed).
        api.post(f"/v1/schedules/{made['id']}/resume")
        wait_for(lambda: len(ticks()) >= len(before) + 2, timeout=10)
        # The active scheduler is SIGKILLed; the standby takes the lock and the schedule keeps firing,
        # catching up the ticks missed meanwhile (run_all).
        holder = str(client.get(LOCK))
        active = next(p for p in processes if f":{p.pid}:" in holder)
        standby = next(p for p in processes if p is not active)
        kill_tree(active)
        killed_after = ticks()[-1]
        wait_for(lambda: f":{standby.pid}:" in str(client.get(LOCK)), timeout=15)
        wait_for(lambda: ticks()[-1] >= killed_after + 3, timeout=15)
        after = [n for n in ticks() if n > before[-1]]
        assert after == list(range(after[0], after[-1] + 1))  # none missed across the failover, none twice
        assert api.call("DELETE", f"/v1/schedules/{made['id']}").status_code == 200
        time.sleep(2.5)  # a fire under way at the deletion may still finish
        done = ticks()
        time.sleep(2)
        assert ticks() == done  # deleted: no more fires
        assert queue_depth(SYSTEM_QUEUE) == len(done)  # one message per job: no tick was sent twice
    finally:
        for process in processes:
            stop(process)
        client.close()
