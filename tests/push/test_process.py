"""The push process as deployed (Procfile.dev's ``worker-push``), SIGKILLed while a push service stalls.

RabbitMQ redelivers the job to the restarted process; no browser gets the message twice: one sent
before the kill is not sent again, nor is the one whose request was in flight (its "sending" entry
stops a second send: a duplicate notification is worse than a rare lost one; a request in flight
when its worker dies may be lost, and is reported sent, unconfirmed), and one not tried yet is sent
once. Subscriptions are sent one at a time here (``OFFLOAD_PUSH_CONCURRENCY=1``), so which one is in
flight at the kill is known.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from offload.publish import Publisher
from offload.vapid import new_private_key
from tests.deploy.test_compose import procfile
from tests.helpers import wait_for
from tests.support import AMQP_URL, REDIS_URL, Api
from tests.support.push import PushService
from tests.system.stack import Worker, stack_env

pytestmark = pytest.mark.slow


def _worker_push(env: dict[str, str], logs: Path) -> Worker:
    """The worker process ``worker-push`` of Procfile.dev, with its queues and threads."""
    _, argv = procfile()["worker-push"]
    queues = tuple(argv[argv.index("--queues") + 1 : argv.index("--processes")])
    return Worker(env, logs, domain="email", threads=int(argv[argv.index("--threads") + 1]), queues=queues)


def test_a_push_job_whose_worker_is_killed_mid_way_reaches_each_browser_once(
    api: Api, publisher: Publisher, push_service: PushService, tmp_path: Path
) -> None:
    env = stack_env(AMQP_URL, REDIS_URL, OFFLOAD_VAPID_PRIVATE_KEY=new_private_key(), OFFLOAD_PUSH_CONCURRENCY="1")
    ids = {}
    for token, answer in (("a", (201, {})), ("slow", ("stall", {"seconds": "6"})), ("c", (201, {}))):
        time.sleep(0.01)  # sent oldest first
        _, subscription = push_service.subscribe(token, answer)
        response = api.post("/v1/push/subscriptions", json={**subscription, "user_id": "ada"})
        assert response.status_code == 201
        ids[token] = response.get_json()["id"]
    worker = _worker_push(env, tmp_path)
    try:
        job_id = api.submit("push.send", {"user_id": "ada", "title": "Once only"}).get_json()["id"]
        wait_for(lambda: len(push_service.deliveries("slow")) == 1, timeout=20)
        worker.kill()  # while the push service holds the "slow" request
        worker = _worker_push(env, tmp_path)
        record = publisher.wait(job_id, timeout=60)
    finally:
        worker.stop()
    assert record is not None and record.state == "succeeded" and record.attempts == 2, record
    assert record.result["sent"] == 3
    assert {token: len(push_service.deliveries(token)) for token in ("a", "slow", "c")} == {"a": 1, "slow": 1, "c": 1}
    assert all(d.message == {"title": "Once only"} for d in push_service.deliveries())
    # The one in flight at the kill is reported sent, unconfirmed.
    [slow] = [o for o in record.result["subscriptions"] if o["subscription_id"] == ids["slow"]]
    assert slow["status"] == "sent" and "Unconfirmed" in slow["detail"]
