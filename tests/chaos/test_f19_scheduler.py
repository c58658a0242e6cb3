"""F19: scheduler faults: two schedulers at once, the active one killed and restarted, the broker
down across ticks, the workers down at ticks. Each tick runs at most once, no run is lost, and no
tick is skipped silently (reliability-security.md §6.1).

Two scheduler processes (tests/chaos/fast_scheduler.py: the product's ``Scheduler`` with one
schedule ticking every simulated minute, on a clock 30 times faster than real time, so a tick
every 2 s) reach RabbitMQ through a fault proxy; a real worker process runs the ticks' jobs.

(c) both run all along; (b) the active one is SIGKILLed, and restarted 2 ticks later (the test is
its supervisor); (a) the broker link is reset across 2 ticks; (d) the worker is stopped across
several ticks (5 s; 35 s at ``OFFLOAD_CHAOS_SCALE`` ≥ 10: past periodiq's 30 s ``skip_delay``).

Promised, and checked:

- each tick has at most one run (its job id is derived from the tick) and no run ran twice;
- every tick from the first to the last either ran (``succeeded``, its job finished by the worker
  after (d)) or was counted as missed (``offload:scheduler:missed`` and a warning): none silent;
- the standby takes over within the lock's lifetime (2 s here) and the killed one is back within
  10 s; both schedulers survive the broker outage, and the tick due during it is enqueued once it
  heals;
- nothing runs that no tick asked for (unexpected: jobs of the scheduler's tenant not for a tick).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import redis

from offload.scheduler import run_id
from tests.chaos.fast_scheduler import TICK
from tests.chaos.harness import SCALE, assert_common, drain
from tests.chaos.ledger import Ledger, finished, report, seconds_until_progress, succeeded_twice
from tests.chaos.proxy import FaultProxy
from tests.helpers import VENV_BIN, kill_tree, spawn, stop, wait_for
from tests.support import AMQP_URL, REDIS_URL
from tests.system.stack import Worker

SPEED = 30.0  # simulated seconds per real second: a tick every 2 s
TICK_S = 60 / SPEED
WORKERS_DOWN = 35.0 if SCALE >= 10 else 5.0
LOCK = "offload:scheduler:leader"


def _ticks(client: redis.Redis) -> dict[str, list[str]]:
    """The runs the schedulers enqueued, by tick (the ``echo`` of each ``system.noop`` of tenant system)."""
    runs: dict[str, list[str]] = {}
    for key in client.scan_iter("offload:job:*", count=1000):
        name = key.decode()
        if name.count(":") != 2:
            continue
        tenant, payload = client.hmget(name, "tenant", "payload")
        if tenant == b"system" and payload:
            echo = json.loads(payload).get("echo", "")
            runs.setdefault(echo, []).append(name.split(":")[2])
    return runs


def test_f19_scheduler_faults_run_each_tick_at_most_once_and_skip_none_silently(
    env: dict[str, str], logs: Path
) -> None:
    proxy = FaultProxy(int(AMQP_URL.rsplit(":", 1)[1].split("/")[0]))
    vhost = AMQP_URL.rsplit("/", 1)[1]
    epoch = time.time()
    scheduler_env = {
        **env,
        "OFFLOAD_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{proxy.port}/{vhost}",
        "OFFLOAD_SCHEDULER_LOCK_TTL": "2",
        "CHAOS_CLOCK_EPOCH": str(epoch),
        "CHAOS_CLOCK_SPEED": str(SPEED),
    }
    client = redis.Redis.from_url(REDIS_URL)
    worker = Worker(env, logs, domain="email", threads=4)
    started = 0

    def scheduler() -> subprocess.Popen[bytes]:
        nonlocal started
        started += 1
        args = [str(VENV_BIN / "python"), "-m", "tests.chaos.fast_scheduler"]
        return spawn(args, env=scheduler_env, log=logs / f"scheduler-{started}.log")

    schedulers = [scheduler(), scheduler()]  # (c) two at once, all along
    outcome: dict[str, float] = {}
    try:
        wait_for(lambda: client.get(LOCK) is not None, timeout=20)
        time.sleep(2 * TICK_S)
        # (b) the active one killed; the standby takes over; the killed one restarted 2 ticks later.
        holder = str(client.get(LOCK))
        active = next(p for p in schedulers if f":{p.pid}:" in holder)
        kill_tree(active)
        killed_at = time.monotonic()
        standby = next(p for p in schedulers if p is not active)
        wait_for(lambda: f":{standby.pid}:" in str(client.get(LOCK)), timeout=15, interval=0.05)
        outcome["takeover_s"] = time.monotonic() - killed_at
        time.sleep(max(0.0, 2 * TICK_S - outcome["takeover_s"]))
        schedulers[schedulers.index(active)] = scheduler()
        outcome["restart_s"] = time.monotonic() - killed_at
        time.sleep(TICK_S)
        # (a) the broker unreachable across 2 ticks.
        before = len(_ticks(client))
        proxy.set("reset")
        time.sleep(2 * TICK_S + 0.5)
        proxy.set("pass")
        healed = time.monotonic()
        wait_for(lambda: len(_ticks(client)) > before, timeout=15, interval=0.05)
        outcome["enqueued_after_heal_s"] = time.monotonic() - healed
        alive_after_outage = all(p.poll() is None for p in schedulers)
        time.sleep(TICK_S)
        # (d) no worker across several ticks.
        worker.stop()
        time.sleep(WORKERS_DOWN)
        worker.start()
        ledger = Ledger()
        runs = _ticks(client)
        for tick, ids in runs.items():
            for job_id in ids:
                ledger.record(f"tick-{tick}", 202, job_id)
        outcome["recovery_s"] = seconds_until_progress(lambda: finished(ledger, client), total=len(ledger.accepted))
        time.sleep(TICK_S)
    except BaseException:
        worker.stop()  # the checks below (whose finally stops it) will not run
        raise
    finally:
        for process in schedulers:
            stop(process, sig=signal.SIGTERM)
        proxy.close()
    try:
        runs = _ticks(client)
        ledger = Ledger()
        for tick, ids in runs.items():
            for job_id in ids:
                ledger.record(f"tick-{tick}", 202, job_id)
        verdict = drain(ledger, client, timeout=60 * SCALE)
        ticks = sorted(datetime.fromisoformat(t) for t in runs)
        expected = [
            ticks[0] + timedelta(minutes=n) for n in range(int((ticks[-1] - ticks[0]).total_seconds() // 60) + 1)
        ]
        wrong = [t for t, ids in runs.items() if any(j != run_id(TICK, datetime.fromisoformat(t)) for j in ids)]
        missing = [t for t in expected if t.isoformat() not in runs]
        counted = int(client.hget("offload:scheduler:missed", TICK.name) or 0)
        doubles = len(succeeded_twice(ledger, client)) + sum(len(ids) - 1 for ids in runs.values())
        warnings = sum((logs / f"scheduler-{n}.log").read_text().count("Skipped ") for n in range(1, started + 1))
        report(
            "F19",
            verdict,
            double_effects=doubles,
            recovery_s=outcome["recovery_s"],
            faults=4,
            ticks=len(expected),
            ran=len(runs),
            missed=len(missing),
            missed_counted=counted,
            takeover_s=round(outcome["takeover_s"], 1),
            restarted_after_s=round(outcome["restart_s"], 1),
            enqueued_after_heal_s=round(outcome["enqueued_after_heal_s"], 1),
            workers_down_s=WORKERS_DOWN,
        )
        assert_common(verdict)
        assert verdict.terminal == {"succeeded": len(runs)}, verdict.terminal
        assert doubles == 0 and wrong == []
        assert len(missing) == counted and (counted == 0 or warnings >= 1), (missing, counted, warnings)
        assert len(expected) >= 8 and len(runs) >= len(expected) - 3, (len(expected), len(runs))
        assert outcome["takeover_s"] <= 2 + 1 and outcome["restart_s"] <= 10
        assert alive_after_outage and outcome["enqueued_after_heal_s"] <= 2 * TICK_S
        assert outcome["recovery_s"] <= 30
    finally:
        worker.stop()
