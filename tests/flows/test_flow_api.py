"""``/v1/flows`` in process (the Flask app on real RabbitMQ and Redis): bad flows, status, stream, cancel, tenancy."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
from flask import Flask

from offload.flows import MAX_DEPTH, MAX_NODES
from tests.support import KEYS, Api


def _sleeps(count: int, ms: int = 10) -> list[dict[str, Any]]:
    return [{"name": f"n{i}", "type": "system.sleep", "payload": {"ms": ms}} for i in range(count)]


def _refused(api: Api, body: Any) -> dict[str, Any]:
    response = api.post("/v1/flows", json=body)
    assert response.status_code == 422, response.get_json()
    return response.get_json()


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The (name, data) of each event of an SSE body."""
    found = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if line.startswith(("event: ", "data: ")))
        if "event" in lines:
            found.append((lines["event"], json.loads(lines["data"])))
    return found


def _field(problem: dict[str, Any]) -> str:
    return problem["errors"][0]["field"]


def test_a_cycle_is_refused_naming_a_node_on_it(api: Api) -> None:
    nodes = [
        {"name": "behind", "type": "system.noop", "needs": ["c"]},  # waits for the cycle, is not on it
        {"name": "a", "type": "system.noop", "needs": ["c"]},
        {"name": "b", "type": "system.noop", "needs": ["a"]},
        {"name": "c", "type": "system.noop", "needs": ["b"]},
    ]
    problem = _refused(api, {"nodes": nodes})
    assert problem["error"] == "validation_failed" and problem["errors"][0]["rule"] == "cycle"
    assert _field(problem) in {"nodes[1].needs", "nodes[2].needs", "nodes[3].needs"} and "cycle" in problem["detail"]
    self_need = _refused(api, {"nodes": [{"name": "a", "type": "system.noop", "needs": ["a"]}]})
    assert _field(self_need) == "nodes[0].needs[0]" and self_need["errors"][0]["rule"] == "cycle"


def test_too_many_nodes_or_levels_are_refused(api: Api) -> None:
    big = _refused(api, {"nodes": [{"name": f"n{i}", "type": "system.noop"} for i in range(MAX_NODES + 1)]})
    assert _field(big) == "nodes" and big["errors"][0]["rule"] == "too_long"
    chain: list[dict[str, Any]] = [{"name": "n0", "type": "system.noop"}]
    chain += [{"name": f"n{i}", "type": "system.noop", "needs": [f"n{i - 1}"]} for i in range(1, MAX_DEPTH + 1)]
    deep = _refused(api, {"nodes": chain})
    assert deep["errors"][0]["rule"] == "too_deep" and _field(deep) == f"nodes[{MAX_DEPTH}].needs"


def test_an_unknown_type_or_a_bad_payload_names_the_node(api: Api) -> None:
    nodes = _sleeps(10)
    nodes[3]["type"] = "system.nope"
    unknown = _refused(api, {"nodes": nodes})
    assert unknown["error"] == "unknown_job_type" and "nodes[3] ('n3')" in unknown["detail"]
    nodes = _sleeps(10)
    nodes[7]["payload"] = {"ms": -5}
    bad = _refused(api, {"nodes": nodes})
    assert bad["error"] == "validation_failed" and "nodes[7] ('n7')" in bad["detail"]
    assert _field(bad) == "nodes[7].payload.ms" and bad["errors"][0]["pointer"] == "/nodes/7/payload/ms"


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ([], "body", "dict_type"),
        ({"nodes": []}, "nodes", "too_short"),
        ({"nodes": [{"name": "a", "type": "system.noop"}], "extra": 1}, "extra", "extra_forbidden"),
        ({"nodes": [{"name": "a b", "type": "system.noop"}]}, "nodes[0].name", "pattern"),
        ({"nodes": [{"name": "a", "type": "system.noop"}] * 2}, "nodes[1].name", "unique"),
        ({"nodes": [{"name": "a", "type": "system.noop", "needs": ["b"]}]}, "nodes[0].needs[0]", "unknown_node"),
        (
            {
                "nodes": [
                    {"name": "a", "type": "system.noop"},
                    {"name": "b", "type": "system.noop", "needs": [{"node": "a", "on_failure": "shrug"}]},
                ]
            },
            "nodes[1].needs[0].on_failure",
            "literal_error",
        ),
        (
            {
                "nodes": [
                    {"name": "a", "type": "system.noop"},
                    {"name": "b", "type": "system.noop", "needs": ["a"], "options": {"delay": 5}},
                ]
            },
            "nodes[1].options.delay",
            "needs_delay",
        ),
    ],
)
def test_a_malformed_flow_gets_a_422_naming_the_field(api: Api, body: Any, field: str, rule: str) -> None:
    problem = _refused(api, body)
    assert (_field(problem), problem["errors"][0]["rule"]) == (field, rule)


def test_a_flow_is_followed_as_one_and_only_by_its_tenant(api: Api, worker) -> None:
    body = {"nodes": [*_sleeps(3), {"name": "all", "type": "system.gather", "needs": ["n0", "n1", "n2"]}]}
    response = api.post("/v1/flows", json=body)
    assert response.status_code == 202, response.get_json()
    accepted = response.get_json()
    assert [node["state"] for node in accepted["nodes"]] == ["queued"] * 3 + ["waiting"]
    assert response.headers["Location"] == accepted["status_url"]
    flow_id = accepted["id"]
    assert api.as_("globex").get(f"/v1/flows/{flow_id}").status_code == 404
    assert api.as_("globex").get(f"/v1/flows/{flow_id}/events").status_code == 404
    assert api.as_("globex").post(f"/v1/flows/{flow_id}/cancel").status_code == 404
    assert api.as_("admin").get(f"/v1/flows/{flow_id}").status_code == 200
    stream = api.get(f"/v1/flows/{flow_id}/events")  # reads until the flow event closes it
    events = _events(stream.get_data(as_text=True))
    assert events[0][0] == "snapshot" and events[-1][0] == "flow" and events[-1][1]["state"] == "succeeded"
    assert ("node", "all", "succeeded") in [(name, data.get("node"), data.get("state")) for name, data in events]
    flow = api.get(f"/v1/flows/{flow_id}").get_json()
    assert flow["state"] == "succeeded" and flow["counts"] == {"succeeded": 4} and flow["pending"] == 0
    parent = api.get(f"/v1/jobs/{accepted['nodes'][3]['id']}").get_json()
    assert parent["result"]["children"]["n1"] == {"slept_ms": 10} and parent["flow"] == {"id": flow_id, "node": "all"}
    again = api.post(f"/v1/flows/{flow_id}/cancel")
    assert again.status_code == 409 and again.get_json()["error"] == "invalid_state"


def test_the_admin_job_page_names_the_flow(app: Flask, api: Api) -> None:
    accepted = api.post("/v1/flows", json={"nodes": _sleeps(1)}).get_json()
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/login").get_data(as_text=True))
    assert token is not None
    client.post("/admin/login", data={"key": KEYS["admin"], "csrf_token": token.group(1)})
    html = client.get(f"/admin/jobs/{accepted['nodes'][0]['id']}").get_data(as_text=True)
    assert f"<dt>Flow</dt><dd>{accepted['id']} (node n0)</dd>" in html


def test_a_cancelled_flow_cancels_what_has_not_started(api: Api) -> None:
    body = {"nodes": [*_sleeps(2), {"name": "all", "type": "system.gather", "needs": ["n0", "n1"]}]}
    flow_id = api.post("/v1/flows", json=body).get_json()["id"]  # no worker: nothing starts
    response = api.post(f"/v1/flows/{flow_id}/cancel")
    assert response.status_code == 200 and response.get_json() == {"id": flow_id, "state": "cancelled", "cancelled": 3}
    flow = api.get(f"/v1/flows/{flow_id}").get_json()
    assert flow["state"] == "cancelled" and flow["halted"] == "cancelled" and flow["counts"] == {"cancelled": 3}


def test_the_same_idempotency_key_and_body_answer_the_same_flow(api: Api) -> None:
    body = {"nodes": _sleeps(2)}
    headers = {"Idempotency-Key": "flow-1"}
    first = api.post("/v1/flows", json=body, headers=headers)
    again = api.post("/v1/flows", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.get_json() == first.get_json()
    other = api.post("/v1/flows", json={"nodes": _sleeps(3)}, headers=headers)
    assert other.status_code == 409 and other.get_json()["error"] == "idempotency_key_reused"


def test_a_batch_is_a_flow_whose_then_job_runs_once_every_job_has_ended(api: Api, worker) -> None:
    jobs = [{"type": "system.noop", "payload": {"echo": str(i)}} for i in range(3)]
    jobs.append({"type": "system.fail", "payload": {"permanent": True, "message": "no"}})
    response = api.post("/v1/batches", json={"jobs": jobs, "then": {"type": "system.gather"}})
    assert response.status_code == 202, response.get_json()
    accepted = response.get_json()
    assert accepted["then"]["state"] == "waiting" and accepted["events_url"].endswith(
        f"/v1/flows/{accepted['id']}/events"
    )
    events = _events(api.get(f"/v1/flows/{accepted['id']}/events").get_data(as_text=True))
    assert events[-1][0] == "flow" and events[-1][1]["kind"] == "batch" and events[-1][1]["state"] == "succeeded"
    batch = api.get(f"/v1/batches/{accepted['id']}").get_json()
    assert batch["done"] and batch["counts"]["succeeded"] == 3 and batch["counts"]["failed"] == 1
    assert batch["then"] == {"id": accepted["then"]["id"], "state": "succeeded"}
    then = api.get(f"/v1/jobs/{accepted['then']['id']}").get_json()
    assert then["result"]["children"] == {
        **{str(i): {"echo": str(i)} for i in range(3)},
        "3": {"state": "failed", "error": {"code": "permanent_error", "message": "no"}},
    }
    assert api.as_("globex").get(f"/v1/flows/{accepted['id']}").status_code == 404


def test_flow_requests_and_answers_match_the_openapi_document(api: Api) -> None:
    document = api.get("/openapi.json").get_json()

    def schema(name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}", "components": document["components"]}

    body = {"nodes": [*_sleeps(2), {"name": "all", "type": "system.gather", "needs": ["n0", {"node": "n1"}]}]}
    jsonschema.validate(body, schema("FlowRequest"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            {"nodes": [{"name": "a", "type": "system.noop", "needs": [{"node": "b", "x": 1}]}]}, schema("FlowRequest")
        )
    accepted = api.post("/v1/flows", json=body).get_json()
    jsonschema.validate(accepted, schema("FlowAccepted"))
    jsonschema.validate(api.get(f"/v1/flows/{accepted['id']}").get_json(), schema("Flow"))
    jsonschema.validate(api.post(f"/v1/flows/{accepted['id']}/cancel").get_json(), schema("FlowCancelled"))
    jsonschema.validate(api.get(f"/v1/flows/{accepted['id']}").get_json(), schema("Flow"))
    batch = api.post("/v1/batches", json={"jobs": [{"type": "system.noop"}], "then": {"type": "system.gather"}})
    jsonschema.validate(batch.get_json(), schema("BatchAccepted"))
    jsonschema.validate(api.get(f"/v1/batches/{batch.get_json()['id']}").get_json(), schema("Batch"))
