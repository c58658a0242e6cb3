"""Each tenant's feed (``offload.status.feeds``) holds every change its jobs' channels carry, in order.

Every script that writes a change feeds the tenant's stream in the same call, so ``GET /v1/events``
misses nothing: created (queued, scheduled), started, progress, ended one by one or in a batch of
ends pipelined together, retrying and due again, cancelled (waiting, or asked of a running job),
reopened, refused at adoption, failed unstarted, dead after too many deliveries. Log lines stay on
the job's channel only.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

from offload.status import JobState, StatusStore
from tests.support import REDIS_URL


def _fields(**extra: Any) -> dict[str, str | int]:
    return {
        "tenant": "acme",
        "type": "system.noop",
        "queue": "system",
        "payload": "{}",
        "created_at": int(time.time() * 1000),
        **extra,
    }


def test_every_path_that_changes_a_job_feeds_its_tenants_stream(redis_client: redis.Redis) -> None:
    store = StatusStore.from_url(REDIS_URL)
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe(store.keys.events("*"))
    lifecycle = store.lifecycle
    try:
        ids = [str(uuid.uuid4()) for _ in range(8)]
        batched, retried, waiting, running, refused, unstarted, redelivered, _ = ids
        for made in (batched, waiting, running, unstarted, redelivered):
            lifecycle.create(made, _fields(tags='["t"]'))
        lifecycle.create(retried, _fields(), scheduled_for=int(time.time() * 1000) - 1)
        store.timers.claim_due()  # scheduled -> queued
        for started in (batched, retried, running, redelivered):
            lifecycle.start(started, max_unfinished=1)
        lifecycle.progress(batched, 1, 50, "half")
        lifecycle.log(batched, 1, "a line: on the job's channel only")
        lifecycle.finish_succeeded_many([(batched, 1, {"ok": True})])  # the worker's batched end
        lifecycle.finish(retried, 1, JobState.RETRYING, error=("boom", "Boom."), retry_at=int(time.time() * 1000))
        store.timers.claim_due()
        lifecycle.start(retried, max_unfinished=3)
        lifecycle.finish(retried, 2, JobState.FAILED, error=("boom", "Boom."))
        lifecycle.reopen(retried, tenant=None)
        lifecycle.cancel(waiting, tenant="acme")
        lifecycle.cancel(running, tenant="acme")  # asked of a running job
        lifecycle.finish(running, 1, JobState.CANCELLED, error=("cancelled", "Stopped."))
        lifecycle.refuse(refused, _fields(), ("not_allowed", "Refused at adoption."))
        lifecycle.fail_unstarted(unstarted, ("broker_unavailable", "Not published."))
        lifecycle.start(redelivered, max_unfinished=1)  # a second delivery that never finished: dead

        published = []
        quiet_until = time.monotonic() + 1.0
        while time.monotonic() < quiet_until:  # a None is also what an ignored subscribe message reads as
            message = pubsub.get_message(timeout=0.2)
            if message is None:
                continue
            heard, event = message["channel"].rsplit(":", 1)[1], json.loads(message["data"])
            # Pub/sub spans Redis's databases: other suites' jobs are heard too.
            if heard in ids and event["kind"] != "log":
                published.append((heard, event))
        fed = [(c.job_id, c.event) for c in store.feeds.read({"acme": "0-0"}, count=1000, block_ms=10)]
        assert fed == published
        kinds = {(event["kind"], event.get("state")) for _, event in fed}
        assert kinds >= {
            ("state", "queued"),
            ("state", "scheduled"),
            ("state", "running"),
            ("progress", "running"),
            ("state", "succeeded"),
            ("state", "retrying"),
            ("state", "failed"),
            ("cancel_requested", "running"),
            ("state", "cancelled"),
            ("state", "dead"),
        }
        assert {job for job, _ in fed} == set(ids) - {ids[-1]}
        tagged = {c.job_id: c.tags for c in store.feeds.read({"acme": "0-0"}, count=1000, block_ms=10)}
        assert tagged[batched] == ["t"] and tagged[retried] == []
    finally:
        pubsub.close()
        store.close()
