"""Broker outages against a private RabbitMQ node: fast 503s, recovery without restart, durable delays."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from offload.contracts import BUILT_IN
from offload.status import now_ms
from tests.helpers import wait_for
from tests.support import REDIS_URL
from tests.system.stack import Api, PrivateRabbitMQ, Worker, stack_env

SUBMIT = {"type": "system.noop", "payload": {}}


def _timed_submit(api: Api) -> tuple[int, float, dict]:
    started = time.monotonic()
    status, headers, body = api.request("POST", "/v1/jobs", SUBMIT)
    return status, time.monotonic() - started, {**body, "_retry_after": headers.get("Retry-After")}


def test_with_the_broker_stopped_or_hung_submissions_get_503_within_2_s_and_recover_without_restart(
    private_rabbitmq: PrivateRabbitMQ, redis_client, logs: Path
) -> None:
    api = Api(stack_env(private_rabbitmq.url, REDIS_URL), logs)
    store = redis.Redis.from_url(REDIS_URL)
    try:
        assert _timed_submit(api)[0] == 202
        # Hung: the broker accepts TCP but answers nothing.
        private_rabbitmq.pause()
        for _ in range(2):
            status, elapsed, body = _timed_submit(api)
            assert status == 503 and elapsed < 2.5, (status, elapsed)
            assert body["error"] == "broker_unavailable" and body["_retry_after"]
        private_rabbitmq.resume()
        wait_for(lambda: _timed_submit(api)[0] == 202, timeout=30, interval=0.5)
        # Stopped: connection refused.
        private_rabbitmq.stop()
        for _ in range(3):
            status, elapsed, body = _timed_submit(api)
            assert status == 503 and elapsed < 2.0 and body["error"] == "broker_unavailable"
        # Nothing half-written: no record is left for a job that got 503.
        accepted_ids = {j for j in (k.decode().split(":")[2] for k in store.keys("offload:job:*")) if ":" not in j}
        status, _, page = api.request("GET", "/v1/jobs?limit=200")
        assert {j["id"] for j in page["jobs"]} == accepted_ids and all(j["state"] == "queued" for j in page["jobs"])
        # Started again: the same API process recovers.
        private_rabbitmq.start()
        wait_for(lambda: _timed_submit(api)[0] == 202, timeout=30, interval=0.5)
    finally:
        api.stop()


def test_a_job_delayed_45_minutes_stays_scheduled_across_worker_and_broker_restarts(
    private_rabbitmq: PrivateRabbitMQ, redis_client, logs: Path
) -> None:
    env = stack_env(private_rabbitmq.url, REDIS_URL)
    api, worker = Api(env, logs), Worker(env, logs)
    try:
        status, _, accepted = api.request("POST", "/v1/jobs", {**SUBMIT, "options": {"delay": 45 * 60}})
        assert status == 202 and accepted["state"] == "scheduled"
        job_id = accepted["id"]
        worker.stop()
        worker.start()
        private_rabbitmq.stop()
        private_rabbitmq.start()
        time.sleep(2)
        _, _, job = api.request("GET", f"/v1/jobs/{job_id}")
        assert job["state"] == "scheduled" and job["attempts"] == 0
        # The delay waits in Redis, not in the broker: nothing is held unacked past consumer_timeout.
        assert private_rabbitmq.queue_depth("system") == 0 and private_rabbitmq.queue_depth("system.DQ") == 0
        # Shorten the clock: the job comes due now, runs once, and its history is complete.
        redis_client.zadd("offload:scheduled", {job_id: now_ms()})
        wait_for(lambda: api.request("GET", f"/v1/jobs/{job_id}")[2]["state"] == "succeeded", timeout=30, interval=0.2)
        _, _, job = api.request("GET", f"/v1/jobs/{job_id}")
        assert job["attempts"] == 1
        assert [h["state"] for h in job["history"]] == ["scheduled", "queued", "running", "succeeded"]
    finally:
        api.stop()
        worker.stop()


def test_each_api_process_connects_and_declares_its_queues_before_its_first_submission(
    private_rabbitmq: PrivateRabbitMQ, redis_client, logs: Path
) -> None:
    node = private_rabbitmq
    api = Api(stack_env(node.url, REDIS_URL), logs, workers=2)
    try:
        # No request yet: both worker processes have their connection open and every job queue
        # declared, so that no submission spends its answer deadline (0.75 s) on the handshakes.
        wait_for(lambda: len(node.ctl("list_connections", "pid", "--quiet").split()) >= 2, timeout=20)
        declared = set(node.ctl("list_queues", "name", "--quiet").split())
        assert set(BUILT_IN.queues) <= declared, declared
        status, elapsed, _ = _timed_submit(api)
        assert status == 202 and elapsed < 0.5, (status, elapsed)
    finally:
        api.stop()
