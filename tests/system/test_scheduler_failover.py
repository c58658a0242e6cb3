"""Issue 6, must-show 3 (processes): two offload-scheduler processes, the active one SIGKILLed, the other takes over."""

from __future__ import annotations

from pathlib import Path

import redis

from tests.helpers import VENV_BIN, kill_tree, spawn, stop, wait_for
from tests.support import REDIS_URL

LOCK = "offload:scheduler:leader"


def test_the_standby_scheduler_takes_over_when_the_active_one_is_killed(env, logs: Path) -> None:
    env = {**env, "OFFLOAD_SCHEDULER_LOCK_TTL": "2"}
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    processes = [
        spawn([str(VENV_BIN / "offload-scheduler")], env=env, log=logs / f"scheduler-{name}.log") for name in "ab"
    ]
    try:
        wait_for(lambda: client.get(LOCK) is not None, timeout=20)
        holder = str(client.get(LOCK))
        active = next(p for p in processes if f":{p.pid}:" in holder)
        standby = next(p for p in processes if p is not active)
        kill_tree(active)
        # The standby takes the lock once the dead one's lapses (2 s here, 30 s by default).
        wait_for(lambda: f":{standby.pid}:" in str(client.get(LOCK)), timeout=15)
        assert standby.poll() is None
        log = logs / f"scheduler-{'ab'[processes.index(standby)]}.log"
        wait_for(lambda: "is now active" in log.read_text(), timeout=5)  # logged just after it took the lock
    finally:
        for process in processes:
            stop(process)
