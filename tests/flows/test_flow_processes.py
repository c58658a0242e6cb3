"""Flows on the real suite as processes: ``offload-api`` and a Dramatiq worker on real RabbitMQ and Redis.

The fan-in's promises where they are hard to keep: ten children ending together (batched ends
on four threads), a worker SIGKILLed while children run (redelivered), a child failing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from offload.publish import Publisher
from tests.helpers import wait_for
from tests.system.stack import Api, Worker

CHILDREN = 10


def _flow(api: Api, flow_id: str) -> dict[str, Any]:
    status, _, body = api.request("GET", f"/v1/flows/{flow_id}")
    assert status == 200, body
    return body


def _submit(api: Api, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    status, _, accepted = api.request("POST", "/v1/flows", {"nodes": nodes})
    assert status == 202, accepted
    return accepted


def _children(payload: dict[str, Any], **edge: str) -> list[dict[str, Any]]:
    nodes = [{"name": f"c{i}", "type": "system.sleep", "payload": payload} for i in range(CHILDREN)]
    needs = [{"node": f"c{i}", **edge} for i in range(CHILDREN)]
    return [*nodes, {"name": "parent", "type": "system.gather", "needs": needs}]


@contextlib.contextmanager
def _stack(env: dict[str, str], logs: Path, *, threads: int) -> Iterator[tuple[Api, Worker]]:
    """``offload-api`` and a worker with ``threads`` threads, stopped after."""
    api, worker = Api(env, logs), Worker(env, logs, threads=threads)
    try:
        yield api, worker
    finally:
        api.stop()
        worker.stop()


@pytest.mark.timeout(120)
def test_a_parent_runs_once_after_its_ten_children_though_their_worker_was_killed(
    env: dict[str, str], logs: Path, publisher: Publisher
) -> None:
    with _stack(env, logs, threads=4) as (api, worker):
        accepted = _submit(api, _children({"ms": 2500, "steps": 10}))
        ids = {node["name"]: node["id"] for node in accepted["nodes"]}
        # SIGKILL the worker while children run (some have reported progress, none has ended).
        wait_for(lambda: _flow(api, accepted["id"])["counts"].get("running", 0) >= 2, timeout=30, interval=0.02)
        worker.kill()
        flow = _flow(api, accepted["id"])
        running = [node["name"] for node in flow["nodes"] if node["state"] == "running"]
        assert running and flow["counts"]["waiting"] == 1 and flow["state"] == "running", flow
        worker.start()  # the killed children are redelivered
        wait_for(lambda: _flow(api, accepted["id"])["state"] != "running", timeout=60)
        flow = _flow(api, accepted["id"])
        assert flow["state"] == "succeeded" and flow["counts"] == {"succeeded": CHILDREN + 1}, flow
        parent = publisher.get(ids["parent"])
        children = [publisher.get(ids[f"c{i}"]) for i in range(CHILDREN)]
        assert parent is not None and all(child is not None for child in children)
        assert parent.result == {"children": {f"c{i}": {"slept_ms": 2500} for i in range(CHILDREN)}}
        # exactly once: one attempt, one `running` in its history, after every child had ended
        history = [event["state"] for event in publisher.store.queries.history(ids["parent"])]
        assert parent.attempts == 1 and history == ["scheduled", "queued", "running", "succeeded"], history
        assert parent.started_at is not None
        assert all(
            child.finished_at is not None and child.finished_at <= parent.started_at for child in children if child
        )
        assert all(getattr(publisher.get(ids[name]), "attempts", None) == 2 for name in running)


@pytest.mark.timeout(120)
def test_a_failing_child_with_policy_fail_fails_the_parent_and_cancels_the_rest(
    env: dict[str, str], logs: Path, publisher: Publisher
) -> None:
    with _stack(env, logs, threads=2) as (api, _):
        nodes = _children({"ms": 2000, "steps": 4}, on_failure="fail")
        nodes.insert(0, {"name": "bad", "type": "system.fail", "payload": {"permanent": True, "message": "broken"}})
        nodes[-1]["needs"].append("bad")
        accepted = _submit(api, nodes)
        wait_for(lambda: _flow(api, accepted["id"])["state"] != "running", timeout=60)
        flow = _flow(api, accepted["id"])
        states = {node["name"]: node["state"] for node in flow["nodes"]}
        assert flow["state"] == "failed" and states["bad"] == "failed" and states["parent"] == "failed", flow
        parent = publisher.get(next(node["id"] for node in accepted["nodes"] if node["name"] == "parent"))
        assert parent is not None and parent.error_code == "child_failed" and parent.attempts == 0
        # With two threads, at most the one child beside `bad` had started: it ran to its end.
        children = [states[f"c{i}"] for i in range(CHILDREN)]
        assert children.count("cancelled") >= CHILDREN - 2 and set(children) <= {"cancelled", "succeeded"}, states
