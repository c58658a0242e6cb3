"""Stalled jobs: a record left ``running`` past any possible end is delivered again, once."""

from __future__ import annotations

from offload.publish import Publisher
from offload.status import JobState, now_ms
from offload.worker.promoter import DuePromoter
from tests.support import RunningWorker


def _lose_the_ending(publisher: Publisher, job_id: str, *, minutes_ago: int) -> None:
    """Put the record back to what it was before its ending was written (as a Redis crash would)."""
    client, keys = publisher.store.client, publisher.store.keys
    key = keys.job(job_id)
    record = client.hgetall(key)
    client.hset(key, mapping={"state": "running", "started_at": now_ms() - minutes_ago * 60_000})
    client.hdel(key, "finished_at", "result")
    for tenant in ("_all", str(record["tenant"])):
        client.zrem(keys.index(tenant, str(record["type"]), JobState.SUCCEEDED), job_id)
        client.zadd(keys.index(tenant, str(record["type"]), JobState.RUNNING), {job_id: now_ms()})


def test_a_job_whose_ending_was_lost_is_delivered_again_once_and_ends(
    publisher: Publisher, worker: RunningWorker, wait_state
) -> None:
    stalled = publisher.publish("system.noop", {"echo": "again"}, tenant="acme")
    recent = publisher.publish("system.noop", {}, tenant="acme")
    wait_state(stalled.job_id, "succeeded")
    wait_state(recent.job_id, "succeeded")
    _lose_the_ending(publisher, stalled.job_id, minutes_ago=5)  # noop: 10 s limit + 30 s grace + 60 s
    _lose_the_ending(publisher, recent.job_id, minutes_ago=1)  # could still be running: left alone
    promoter = DuePromoter(publisher.store, publisher)
    assert promoter.recover_stalled_if_due(force=True) == 1
    assert promoter.recover_stalled_if_due(force=True) == 0  # claimed once, across processes
    record = wait_state(stalled.job_id, "succeeded")
    assert record.attempts == 2 and record.result == {"echo": "again"}
    history = publisher.store.queries.history(stalled.job_id)
    assert history[-2]["state"] == "running" and history[-2].get("redelivered") is True
    left = publisher.get(recent.job_id)
    assert left is not None and left.state is JobState.RUNNING
