"""F12: delays and retry backoffs never sit in the broker, so none can outlive ``consumer_timeout``.

Plain Dramatiq keeps a delayed message unacked in the worker until its ETA; past RabbitMQ's
``consumer_timeout`` the channel is closed and the message redelivered or duplicated (dramatiq#827,
#431, #461). Offload keeps delayed jobs and retry waits in Redis and publishes them when due. On a
private node with ``consumer_timeout`` = 60 s: every delayed job runs exactly once, within ETA + 5 s,
the delay queue stays empty, and the broker logs no ``PRECONDITION_FAILED``. The default suite
delays 3 s; ``make chaos`` delays 150 s, well past the timeout (reliability-security.md §6.1 F12).
"""

from __future__ import annotations

import time
from pathlib import Path

import redis

from tests.chaos.harness import SCALE, Submitter, assert_common, drain
from tests.chaos.ledger import Ledger, report
from tests.support import REDIS_URL
from tests.system.stack import Api, PrivateRabbitMQ, Worker, stack_env

DELAY_S = 150 if SCALE >= 10 else 3


def test_f12_delays_and_backoffs_past_consumer_timeout_run_each_job_once_on_time(
    private_rabbitmq: PrivateRabbitMQ, redis_client, logs: Path
) -> None:
    env = stack_env(private_rabbitmq.url, REDIS_URL)
    api = Api(env, logs)
    worker = Worker(env, logs, domain="email", threads=4)
    ledger = Ledger()
    client = redis.Redis.from_url(REDIS_URL)
    submitter = Submitter(api, ledger)
    try:
        delayed = submitter.burst(20 * SCALE, {"type": "system.noop", "payload": {}, "options": {"delay": DELAY_S}})
        failing = submitter.burst(
            10 * SCALE, {"type": "system.fail", "payload": {"succeed_on_attempt": 2}, "options": {"max_retries": 2}}
        )
        assert all(a.status == 202 for a in delayed + failing)
        depths = []
        deadline = time.monotonic() + DELAY_S - 1
        while time.monotonic() < deadline:  # nothing waits in the broker meanwhile
            depths.append(private_rabbitmq.queue_depth("system.DQ"))
            time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
        verdict = drain(ledger, client, timeout=DELAY_S + 60)
        records = [
            {k.decode(): v.decode() for k, v in client.hgetall(f"offload:job:{job_id}").items()}
            for job_id in ledger.accepted
        ]
        late = [
            (int(r["started_at"]) - int(r["created_at"])) / 1000 - DELAY_S
            for r in records
            if r["type"] == "system.noop"
        ]
        broker_log = "".join(p.read_text(errors="replace") for p in (private_rabbitmq.base / "log").glob("*.log"))
        report(
            "F12",
            verdict,
            double_effects=0,
            recovery_s=None,
            faults=0,
            delay_s=DELAY_S,
            latest_start_after_eta_s=round(max(late), 1),
            max_delay_queue_depth=max(depths, default=0),
            precondition_failed=broker_log.count("PRECONDITION_FAILED"),
        )
        assert_common(verdict)
        assert verdict.terminal == {"succeeded": 30 * SCALE}, verdict.terminal
        assert all(r["attempts"] == ("1" if r["type"] == "system.noop" else "2") for r in records)
        assert max(late) <= 5 and min(late) >= -0.5, (min(late), max(late))
        assert max(depths, default=0) == 0
        assert "PRECONDITION_FAILED" not in broker_log
    finally:
        api.stop()
        worker.stop()
