"""Redis outages against a private redis-server: 503s while it is down, recovery without restart."""

from __future__ import annotations

import time

from offload.publish import Publisher
from offload_api.app import create_app
from tests.helpers import wait_for
from tests.support import Api, RunningWorker, make_settings
from tests.system.stack import PrivateRedis


def test_the_api_answers_503_while_redis_is_down_and_recovers_when_it_returns(private_redis: PrivateRedis) -> None:
    settings = make_settings(redis_url=private_redis.url)
    publisher = Publisher.from_settings(settings)
    try:
        api = Api(create_app(settings, publisher=publisher).test_client())
        accepted = [api.submit("system.noop").status_code for _ in range(5)]  # leaves idle connections
        assert accepted == [202] * 5
        private_redis.stop()
        started = time.monotonic()
        down = api.submit("system.noop")
        assert down.status_code == 503 and down.get_json()["error"] == "status_store_unavailable"
        assert time.monotonic() - started < 1.5
        private_redis.start()
        # The very first request after the restart succeeds: stale connections are not reused.
        wait_for(lambda: api.client.get("/readyz").status_code == 200, timeout=10)
        assert api.submit("system.noop").status_code == 202
    finally:
        publisher.close()


def test_a_worker_retries_a_job_while_redis_is_down_and_finishes_it_when_redis_returns(
    private_redis: PrivateRedis,
) -> None:
    settings = make_settings(redis_url=private_redis.url)
    publisher = Publisher.from_settings(settings)
    worker = None
    worker_publisher = Publisher.from_settings(settings, pin_connections=True)
    try:
        job = publisher.publish("system.noop", {"echo": "survived"}, tenant="acme")
        private_redis.stop()
        worker = RunningWorker(settings, worker_publisher, probe=False)
        time.sleep(2)  # the worker receives the job, cannot record its start, and lets Dramatiq retry it
        private_redis.start()

        def succeeded() -> bool:
            record = publisher.get(job.job_id)
            return record is not None and record.state == "succeeded"

        wait_for(succeeded, timeout=30, interval=0.2)
        record = publisher.get(job.job_id)
        assert record is not None and record.attempts == 1 and record.result == {"echo": "survived"}
    finally:
        if worker is not None:
            worker.stop()
        worker_publisher.close()
        publisher.close()
