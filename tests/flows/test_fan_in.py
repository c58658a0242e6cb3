"""Flows through the SDK against real RabbitMQ, Redis and an in-process worker: fan-in and failure policies."""

from __future__ import annotations

from typing import Any

import redis

from offload.publish import Publisher
from offload.testing import wait_for
from tests.support import RunningWorker


def _flow(publisher: Publisher, flow_id: str) -> dict[str, Any]:
    flow = publisher.flows.get(flow_id)
    assert flow is not None
    return flow


def _ended(publisher: Publisher, flow_id: str) -> dict[str, Any]:
    flow = publisher.flows.wait(flow_id, timeout=20)
    assert flow is not None and flow["state"] != "running", flow
    return flow


def test_a_parent_runs_after_its_children_and_gets_their_results(publisher: Publisher, worker: RunningWorker) -> None:
    nodes = [{"name": f"c{i}", "type": "system.noop", "payload": {"echo": f"child {i}"}} for i in range(3)]
    nodes.append({"name": "sum", "type": "system.gather", "needs": ["c0", "c1", "c2"]})
    submitted = publisher.flows.submit({"nodes": nodes}, tenant="acme")
    assert [node.state for node in submitted.nodes] == ["queued"] * 3 + ["waiting"]
    flow = _ended(publisher, submitted.flow_id)
    assert flow["state"] == "succeeded" and flow["counts"] == {"succeeded": 4}, flow
    parent = publisher.get(submitted.nodes[3].job_id)
    assert parent is not None and parent.result == {"children": {f"c{i}": {"echo": f"child {i}"} for i in range(3)}}


def test_policies_ignore_and_continue_let_the_parent_run(publisher: Publisher, worker: RunningWorker) -> None:
    failing = {"type": "system.fail", "payload": {"permanent": True, "message": "no"}}
    nodes = [
        {"name": "ok", "type": "system.noop", "payload": {"echo": "fine"}},
        {"name": "skipped", **failing},
        {"name": "noted", **failing},
        {
            "name": "sum",
            "type": "system.gather",
            "needs": ["ok", {"node": "skipped", "on_failure": "ignore"}, {"node": "noted", "on_failure": "continue"}],
        },
    ]
    submitted = publisher.flows.submit({"nodes": nodes}, tenant="acme")
    flow = _ended(publisher, submitted.flow_id)
    assert flow["state"] == "succeeded", flow
    parent = publisher.get(submitted.nodes[3].job_id)
    assert parent is not None
    assert parent.result == {
        "children": {
            "ok": {"echo": "fine"},
            "noted": {"state": "failed", "error": {"code": "permanent_error", "message": "no"}},
        }
    }


def test_a_failing_child_fails_its_parent_and_cancels_what_has_not_started(
    publisher: Publisher, worker: RunningWorker
) -> None:
    nodes = [
        {"name": "bad", "type": "system.fail", "payload": {"permanent": True}},
        {"name": "later", "type": "system.noop", "options": {"delay": 30}},
        {"name": "sum", "type": "system.gather", "needs": ["bad", "later"]},
        {"name": "top", "type": "system.gather", "needs": ["sum"]},
    ]
    submitted = publisher.flows.submit({"nodes": nodes}, tenant="acme")
    flow = _ended(publisher, submitted.flow_id)
    states = {node["name"]: node["state"] for node in flow["nodes"]}
    assert flow["state"] == "failed" and states == {
        "bad": "failed",
        "later": "cancelled",
        "sum": "failed",
        "top": "cancelled",
    }
    parent = publisher.get(submitted.nodes[2].job_id)
    assert (
        parent is not None
        and parent.error_code == "child_failed"
        and parent.error_message == "Its child bad ended failed."
    )


def test_a_flow_cancelled_through_the_sdk_cancels_what_has_not_started(publisher: Publisher) -> None:
    body = {"nodes": [{"name": "a", "type": "system.noop"}, {"name": "b", "type": "system.gather", "needs": ["a"]}]}
    flow_id = publisher.flows.submit(body, tenant="acme").flow_id  # no worker: nothing starts
    assert publisher.flows.cancel(flow_id, tenant="globex") == ("missing", None, 0)
    assert publisher.flows.cancel(flow_id, tenant="acme") == ("cancelled", "cancelled", 2)
    assert publisher.flows.cancel(flow_id) == ("final", "cancelled", 0)
    assert _ended(publisher, flow_id)["counts"] == {"cancelled": 2}


def test_a_flow_cancelled_while_a_node_runs_ends_cancelled_once_that_node_has_ended(
    publisher: Publisher, worker: RunningWorker
) -> None:
    nodes = [
        {"name": "a", "type": "system.sleep", "payload": {"ms": 1000}},
        {"name": "b", "type": "system.noop", "options": {"delay": 30}},
        {"name": "p", "type": "system.gather", "needs": ["a", "b"]},
    ]
    submitted = publisher.flows.submit({"nodes": nodes}, tenant="acme")
    wait_for(lambda: _flow(publisher, submitted.flow_id)["counts"].get("running") == 1, timeout=10, interval=0.02)
    assert publisher.flows.cancel(submitted.flow_id) == ("cancelled", "running", 2)
    assert _flow(publisher, submitted.flow_id)["halted"] == "cancelled"
    flow = _ended(publisher, submitted.flow_id)
    states = {node["name"]: node["state"] for node in flow["nodes"]}
    assert flow["state"] == "cancelled" and states == {"a": "succeeded", "b": "cancelled", "p": "cancelled"}


def test_the_same_idempotency_key_answers_the_same_flow(publisher: Publisher, redis_client: redis.Redis) -> None:
    body = {"nodes": [{"name": "a", "type": "system.noop"}, {"name": "b", "type": "system.gather", "needs": ["a"]}]}
    first = publisher.flows.submit(body, tenant="acme", idempotency_key="k1")
    again = publisher.flows.submit(body, tenant="acme", idempotency_key="k1")
    assert again.replayed and again.flow_id == first.flow_id and again.nodes == first.nodes
    assert _flow(publisher, first.flow_id)["total"] == 2
