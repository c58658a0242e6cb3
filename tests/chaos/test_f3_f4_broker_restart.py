"""F3 and F4: the broker dies (SIGKILL of its VM) or restarts gracefully while jobs are queued,
running and being submitted.

What was confirmed survives (durable queues, persistent messages, publisher confirms); the API
answers 503 fast while the broker is away instead of hanging; workers reconnect by themselves;
an ack lost with the connection means a second delivery, which is marked, never a second effect
(reliability-security.md §6.1 F3, F4).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from tests.chaos.harness import FAST, SCALE, SLOW, Submitter, assert_common, drain, first_accepted_after, within
from tests.chaos.ledger import Ledger, finished, report, seconds_until_progress, succeeded_twice
from tests.helpers import port_open
from tests.support import REDIS_URL
from tests.system.stack import Api, PrivateRabbitMQ, Worker, stack_env

THREADS = 4
#: The backlog of slow jobs when the broker goes (some of it running).
BACKLOG = 2000 if SCALE >= 10 else 100


@pytest.mark.parametrize("scenario", ["F3", "F4"], ids=["F3-sigkill", "F4-graceful"])
def test_a_broker_restart_under_load_loses_no_accepted_job_and_never_hangs_a_client(
    scenario: str, private_rabbitmq: PrivateRabbitMQ, redis_client, logs: Path
) -> None:
    env = stack_env(private_rabbitmq.url, REDIS_URL)
    api = Api(env, logs, workers=2)
    worker = Worker(env, logs, domain="email", threads=THREADS)
    ledger = Ledger()
    client = redis.Redis.from_url(REDIS_URL)
    submitter = Submitter(api, ledger, timeout=10)
    try:
        submitter.burst(BACKLOG, SLOW)  # a backlog, some of it running when the broker goes
        with submitter.steady(20, FAST) as during:
            time.sleep(2 * SCALE)
            down_at = time.monotonic()
            if scenario == "F3":
                os.kill(private_rabbitmq.beam_pid, signal.SIGKILL)
                assert private_rabbitmq.process is not None
                private_rabbitmq.process.wait(timeout=30)
            else:
                private_rabbitmq.stop()
            time.sleep(3 if SCALE == 1 else 5)
            private_rabbitmq.start()
            up_at = time.monotonic()
            recovery = seconds_until_progress(lambda: finished(ledger, client), total=10**9, timeout=60)
            time.sleep(2 * SCALE)
        outage = within(during, down_at, up_at)
        verdict = drain(ledger, client, timeout=120 * SCALE)
        doubles = len(succeeded_twice(ledger, client))
        first_202 = first_accepted_after(during, up_at)
        slowest = max(a.seconds for a in during)
        report(
            scenario,
            verdict,
            double_effects=doubles,
            recovery_s=recovery,
            faults=1,
            outage_answers=len(outage),
            outage_503=sum(1 for a in outage if a.status == 503),
            slowest_answer_s=round(slowest, 2),
            first_202_after_s=None if first_202 is None else round(first_202, 1),
        )
        assert_common(verdict)
        assert doubles == 0
        assert set(verdict.terminal) == {"succeeded"}
        # While the broker was away: a fast, explicit refusal, never a hang or a 5xx of another kind.
        assert outage and all(a.status in (202, 503) for a in outage), {a.status for a in outage}
        assert all(a.error == "broker_unavailable" and a.retry_after for a in outage if a.status == 503)
        assert slowest <= 2.5, slowest
        assert first_202 is not None and first_202 <= 5
        # A redelivery happens only to jobs whose ack the restart swallowed: at most those running.
        assert verdict.duplicated <= 2 * THREADS
        assert port_open(private_rabbitmq.port)
    finally:
        api.stop()
        worker.stop()
