"""F10: poison messages. Undecodable bodies (garbage, a pickle) and messages for an unknown actor go
to the dead-letter queue without running; a job that always fails ends after exactly N+1 attempts;
a job that kills its worker process on every delivery is quarantined as ``dead`` after 3 deaths
(D6) instead of looping forever, while the other jobs of the run all complete
(reliability-security.md §6.1 F10).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import time
import uuid
from pathlib import Path

import pika
import redis

from tests.chaos.harness import FAST, SCALE, Submitter, assert_common, drain
from tests.chaos.ledger import Ledger, job_history, report, succeeded_twice
from tests.helpers import children, wait_for
from tests.support import AMQP_URL, REDIS_URL
from tests.system.stack import Api, Worker


def _publish_raw(bodies: list[bytes]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        for body in bodies:
            channel.basic_publish("", "system", body, pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()


def _xq_depth() -> int:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        return int(connection.channel().queue_declare("system.XQ", passive=True).method.message_count)
    finally:
        connection.close()


def test_f10_poison_messages_are_dead_lettered_or_quarantined_and_the_rest_of_the_run_completes(
    env: dict[str, str], logs: Path
) -> None:
    api = Api(env, logs)
    worker = Worker(env, logs, domain="email", threads=4)
    ledger = Ledger()
    client = redis.Redis.from_url(REDIS_URL)
    submitter = Submitter(api, ledger)
    try:
        submitter.burst(5, FAST)  # the queues exist and the worker consumes
        # (a) and (d): garbage, a pickle, and a well-formed message for an actor nobody has.
        unknown_id = str(uuid.uuid4())
        unknown = {
            "queue_name": "system",
            "actor_name": "os.system",
            "args": ["touch /tmp/pwned"],
            "kwargs": {},
            "options": {},
            "message_id": unknown_id,
            "message_timestamp": int(time.time() * 1000),
        }
        pickled = pickle.dumps({"actor_name": "system.noop", "message_id": str(uuid.uuid4())})
        sent_at = time.monotonic()
        _publish_raw([b"\x80\x04not json", pickled, json.dumps(unknown).encode()])
        wait_for(lambda: _xq_depth() == 3, timeout=5)
        dead_lettered_s = time.monotonic() - sent_at
        assert client.exists(f"offload:job:{unknown_id}") == 0  # never ran, never adopted
        # (b): a job that always fails, among ordinary ones.
        failing = submitter.submit({"type": "system.fail", "payload": {}, "options": {"max_retries": 2}})
        # (c): a job that takes its worker process down whenever it runs (the test is the killer
        # and the supervisor that starts the worker again).
        poison = submitter.submit({"type": "system.sleep", "payload": {"ms": 5000, "steps": 50}})
        submitter.burst(100 * SCALE, FAST)
        deaths = 0
        poison_key = f"offload:job:{ledger.entries[-100 * SCALE - 1].job_id}"
        assert poison.status == 202 and failing.status == 202

        def poison_state() -> tuple[str, int]:
            state, attempts = client.hmget(poison_key, "state", "attempts")
            return (state or b"").decode(), int(attempts or 0)

        while poison_state()[0] != "dead" and deaths < 5:
            # Wait for the next delivery to start (a new attempt), or for the quarantine.
            seen = deaths
            wait_for(lambda: poison_state()[1] > seen or poison_state()[0] == "dead", timeout=30)  # noqa: B023
            if poison_state()[0] == "dead":
                break
            assert worker.process is not None
            for child in children(worker.process.pid):
                os.kill(child, signal.SIGKILL)
            deaths += 1
            wait_for(lambda: worker.process is not None and worker.process.poll() is not None, timeout=30)
            worker.start()
        verdict = drain(ledger, client, timeout=60 * SCALE)
        failing_record = client.hgetall(f"offload:job:{ledger.entries[-100 * SCALE - 2].job_id}")
        report(
            "F10",
            verdict,
            double_effects=len(succeeded_twice(ledger, client)),
            recovery_s=None,
            faults=4,
            dead_lettered_s=round(dead_lettered_s, 1),
            worker_deaths=deaths,
            always_failing_attempts=int(failing_record[b"attempts"]),
        )
        assert_common(verdict)
        assert dead_lettered_s <= 2
        assert deaths <= 3 and (client.hget(poison_key, "state") or b"").decode() == "dead"
        # Its policy gave it exactly 2 retries. A worker killed while it ran (the poison's kills
        # land at random moments) reruns the cut attempt too: that extra start is a marked
        # redelivery, not a retry, and the verdict counts it among the duplicates.
        failing_id = ledger.entries[-100 * SCALE - 2].job_id
        path = [e.get("state") for e in job_history(client, str(failing_id)) if e.get("kind") == "state"]
        reruns = path.count("running") - 1 - path.count("retrying")
        assert failing_record[b"state"] == b"failed" and path.count("retrying") == 2, path
        assert int(failing_record[b"attempts"]) == 3 + reruns and reruns <= deaths, (failing_record, path)
        # Everything else of the run completed; the quarantined job went to the dead letters too.
        assert verdict.terminal == {"succeeded": 100 * SCALE + 5, "failed": 1, "dead": 1}, verdict.terminal
        assert _xq_depth() >= 4
    finally:
        api.stop()
        worker.stop()
