"""The fan-in in the status store's scripts, on real Redis: once per child, in the batched end path too."""

from __future__ import annotations

import redis

from offload.publish import Publisher
from offload.status import JobState


def test_children_ended_together_in_one_batched_write_release_their_parent_once(
    publisher: Publisher, redis_client: redis.Redis
) -> None:
    body = {
        "nodes": [
            {"name": "a", "type": "system.noop"},
            {"name": "b", "type": "system.noop"},
            {"name": "p", "type": "system.gather", "needs": ["a", "b"]},
        ]
    }
    submitted = publisher.flows.submit(body, tenant="acme")
    ids = {node.name: node.job_id for node in submitted.nodes}
    store, keys = publisher.store, publisher.store.keys
    for name in ("a", "b"):
        assert store.lifecycle.start(ids[name], max_unfinished=3).outcome == "run"
    assert redis_client.zscore(keys.scheduled, ids["p"]) is None
    # the end writer's path: both ends in one pipelined round trip
    assert store.lifecycle.finish_succeeded_many([(ids["a"], 1, {"x": 1}), (ids["b"], 1, {"x": 2})]) == [True, True]
    assert redis_client.zscore(keys.scheduled, ids["p"]) is not None  # due now: the promoter publishes it
    assert redis_client.hget(keys.job(ids["p"]), "flow_waiting") == "0"
    # a redelivered child, an end written twice: nothing counts again
    assert store.lifecycle.start(ids["a"], max_unfinished=3).outcome == "skip"
    assert not store.lifecycle.finish(ids["a"], 1, JobState.SUCCEEDED, result={"x": 1})
    assert redis_client.hget(keys.job(ids["p"]), "flow_waiting") == "0"
    flow = publisher.flows.get(submitted.flow_id)
    assert flow is not None and flow["pending"] == 1 and flow["counts"] == {"succeeded": 2, "scheduled": 1}
    assert store.flows.child_results(ids["p"]) == {"a": {"x": 1}, "b": {"x": 2}}
