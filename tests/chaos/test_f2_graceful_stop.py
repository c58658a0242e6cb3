"""F2: a worker stopped gracefully (SIGTERM) or reloaded (SIGHUP) mid-run, as a deploy does.

Dramatiq stops consuming, lets running jobs finish, requeues what it had prefetched and exits 0;
a new worker takes the rest. Nothing is lost and nothing needs a second run (reliability-security.md
§6.1 F2; dramatiq#148 is the ack-loss-on-shutdown risk this guards against).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import redis

from tests.chaos.harness import FAST, SCALE, SLOW, Submitter, assert_common, drain
from tests.chaos.ledger import Ledger, finished, report, seconds_until_progress, succeeded_twice
from tests.helpers import wait_for
from tests.support import REDIS_URL
from tests.system.stack import Api, Worker

SHUTDOWN_LIMIT_S = 30


def test_f2_sigterm_and_sighup_mid_run_finish_running_jobs_requeue_the_rest_and_lose_nothing(
    env: dict[str, str], logs: Path
) -> None:
    api = Api(env, logs)
    worker = Worker(env, logs, domain="email", threads=4)
    ledger = Ledger()
    client = redis.Redis.from_url(REDIS_URL)
    submitter = Submitter(api, ledger)
    try:
        submitter.burst(100 * SCALE, FAST)
        submitter.burst(60 * SCALE, SLOW)
        total = len(ledger.accepted)
        assert total == 160 * SCALE
        wait_for(lambda: finished(ledger, client) > 10, timeout=30)
        # SIGTERM: a graceful stop, as compose, systemd and Kubernetes send it.
        assert worker.process is not None
        started = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)
        exit_code = worker.process.wait(timeout=SHUTDOWN_LIMIT_S + 5)
        shutdown_s = time.monotonic() - started
        assert exit_code == 0, worker.log.read_text()[-2000:]
        assert shutdown_s < SHUTDOWN_LIMIT_S
        worker.start()
        recoveries = [seconds_until_progress(lambda: finished(ledger, client), total=total, timeout=30)]
        # SIGHUP: Dramatiq's reload (stop the worker processes gracefully, start new ones).
        submitter.burst(60 * SCALE, SLOW)
        total = len(ledger.accepted)
        worker.process.send_signal(signal.SIGHUP)
        recoveries.append(seconds_until_progress(lambda: finished(ledger, client), total=total, timeout=30))
        verdict = drain(ledger, client, timeout=60 * SCALE)
        doubles = len(succeeded_twice(ledger, client))
        report(
            "F2",
            verdict,
            double_effects=doubles,
            recovery_s=max(recoveries),
            faults=2,
            shutdown_s=round(shutdown_s, 1),
            exit_code=exit_code,
        )
        assert_common(verdict)
        assert doubles == 0
        assert verdict.terminal == {"succeeded": total}
        # Graceful means the running jobs finished: at most a prefetched one may show a second
        # attempt (a requeue is not a run), far under 1 % of what was in flight.
        assert verdict.duplicated <= 1
    finally:
        api.stop()
        worker.stop()
