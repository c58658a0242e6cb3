"""The registry over HTTP, the generated OpenAPI document, the docs page and the health probes."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from unittest.mock import ANY

import jsonschema
import pytest
from openapi_spec_validator import validate

from offload.contracts import BUILT_IN
from offload_api.admission import EXEMPT
from tests.support import Api


def test_job_types_list_every_contract_with_its_schema(api: Api) -> None:
    types = api.get("/v1/job-types").get_json()["job_types"]
    assert [t["type"] for t in types] == [c.name for c in BUILT_IN.public]
    assert "webhook.deliver" not in [t["type"] for t in types]  # internal: Offload creates it, clients cannot
    sleep = next(t for t in types if t["type"] == "system.sleep")
    assert sleep["payload_schema"]["properties"]["ms"]["maximum"] == 600_000
    assert sleep["payload_schema"]["additionalProperties"] is False


def test_the_openapi_document_covers_every_route_and_every_job_type(app, api: Api) -> None:
    document = api.get("/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    routes = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and not rule.rule.startswith("/admin")  # HTML pages, not the API
    }
    documented = {path.replace("{", "<").replace("}", ">") for path in document["paths"]}
    assert routes == documented
    schemas = document["components"]["schemas"]
    variants = [schemas[v["$ref"].rsplit("/", 1)[1]] for v in schemas["JobRequest"]["oneOf"]]
    assert [v["properties"]["type"]["const"] for v in variants] == [c.name for c in BUILT_IN.public]


def test_each_job_type_and_each_event_is_a_named_schema_its_discriminator_maps_to(api: Api) -> None:
    """A discriminator selects only a named schema, and generators make a class of each: no inline variant."""
    schemas = api.get("/openapi.json").get_json()["components"]["schemas"]
    for union, key in (("JobRequest", "type"), ("FollowUp", "type"), ("JobEvent", "event")):
        mapping = schemas[union]["discriminator"]["mapping"]
        assert schemas[union]["discriminator"]["propertyName"] == key
        assert [v["$ref"] for v in schemas[union]["oneOf"]] == list(mapping.values())
        for value, ref in mapping.items():
            assert schemas[ref.rsplit("/", 1)[1]]["properties"][key] == {"type": "string", "const": value}
    assert schemas["JobRequest"]["discriminator"]["mapping"]["system.sleep"].endswith("/JobRequestSystemSleep")


def test_internal_job_types_payload_schemas_are_not_published(api: Api) -> None:
    """webhook.deliver, storage.cleanup and the other types Offload creates itself: no request carries them."""
    schemas = api.get("/openapi.json").get_json()["components"]["schemas"]
    internal = [contract for contract in BUILT_IN if contract.internal]
    assert {"webhook.deliver", "storage.cleanup"} <= {contract.name for contract in internal}
    assert [c.payload.__name__ for c in internal if c.payload.__name__ in schemas] == []
    assert all(c.payload.__name__ in schemas for c in BUILT_IN.public)


def test_every_operation_is_described_under_a_declared_tag_and_every_answer_has_a_body_schema(api: Api) -> None:
    document = api.get("/openapi.json").get_json()
    assert document["servers"] == [{"url": "/", "description": "This API."}]  # resolved against the document's URL
    tags = [tag["name"] for tag in document["tags"]]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["description"].strip() and set(operation["tags"]) <= set(tags), (method, path)
            for status, response in operation["responses"].items():
                assert [media["schema"] for media in response["content"].values()], (method, path, status)
    assert document["paths"]["/v1/jobs"]["get"]["responses"]["414"]["content"] == {
        "text/html": {"schema": {"type": "string"}}  # gunicorn's own page
    }


def test_the_documents_server_is_the_public_url_when_one_is_set(publisher) -> None:
    from offload_api.app import create_app
    from tests.support import make_settings

    app = create_app(make_settings(public_url="https://jobs.example.com/"), publisher=publisher)
    assert app.test_client().get("/openapi.json").get_json()["servers"][0]["url"] == "https://jobs.example.com"


def test_the_webhook_offload_sends_is_in_the_webhooks_section_with_its_headers_and_envelope(api: Api) -> None:
    document = api.get("/openapi.json").get_json()
    (name,) = document["webhooks"]
    operation = document["webhooks"][name]["post"]
    headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header" and p["required"]}
    assert {"webhook-id", "webhook-timestamp", "webhook-signature", "User-Agent"} == set(headers)
    content = operation["requestBody"]["content"]
    assert content == {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookEvent"}}}
    envelope = document["components"]["schemas"]["WebhookEvent"]
    assert set(envelope["required"]) == {"type", "timestamp", "data"}
    assert envelope["properties"]["data"] == {"$ref": "#/components/schemas/Job", "description": ANY}
    assert "job.succeeded" in envelope["properties"]["type"]["enum"]
    assert operation["security"] == [] and {"2XX", "410", "4XX", "5XX"} <= set(operation["responses"])
    assert "jobEnded" in api.get("/docs").get_data(as_text=True)


def test_the_openapi_document_is_valid(api: Api) -> None:
    validate(api.get("/openapi.json").get_json())


def _schema(document: dict, name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}", "components": document["components"]}


def test_real_responses_match_their_documented_schemas(api: Api) -> None:
    document = api.get("/openapi.json").get_json()
    accepted = api.submit("system.sleep", {"ms": 5})
    jsonschema.validate(accepted.get_json(), _schema(document, "JobAccepted"))
    job = api.get(f"/v1/jobs/{accepted.get_json()['id']}").get_json()
    jsonschema.validate(job, _schema(document, "Job"))
    jsonschema.validate(api.get("/v1/jobs").get_json(), _schema(document, "JobPage"))
    jsonschema.validate(api.submit("nope.nope").get_json(), _schema(document, "Error"))
    jsonschema.validate(api.get("/v1/job-types").get_json(), _schema(document, "JobTypeList"))
    batch = api.post("/v1/batches", json={"jobs": [{"type": "system.noop"}]}).get_json()
    jsonschema.validate(batch, _schema(document, "BatchAccepted"))
    jsonschema.validate(api.get(f"/v1/batches/{batch['id']}").get_json(), _schema(document, "Batch"))
    jsonschema.validate(api.get("/healthz").get_json(), _schema(document, "Health"))
    jsonschema.validate(api.get("/readyz").get_json(), _schema(document, "Readiness"))


def test_job_requests_are_described_by_the_document(api: Api) -> None:
    document = api.get("/openapi.json").get_json()
    schema = _schema(document, "JobRequest")
    jsonschema.validate({"type": "system.sleep", "payload": {"ms": 5}, "options": {"priority": "high"}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"type": "system.sleep", "payload": {"ms": "5"}}, schema)


def test_the_docs_page_is_self_contained_html(client) -> None:
    response = client.get("/docs")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "system.sleep" in html and "/v1/jobs/{job_id}/events" in html and "<script" not in html


def test_health_and_readiness(client) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.get_json()["checks"] == {"redis": "ok", "broker": "ok"}


def test_every_operation_documents_the_answers_given_before_its_view_runs(app, api: Api) -> None:
    """Admission's 429 and 503 where it guards; 401 and 429 where a key is checked; 403 where a reader may not.

    And 403 where a browser token is taken (a token of another scope).
    """
    document = api.get("/openapi.json").get_json()
    for path, operations in document["paths"].items():
        rule = re.sub(r"\{(\w+)\}", r"<\1>", path)
        for method, operation in operations.items():
            documented = set(operation["responses"])
            assert ({"429", "503"} <= documented) == (rule not in EXEMPT), (method, path)
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        role = getattr(view, "required_role", None)
        if role is None:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            documented = set(document["paths"][path][method.lower()]["responses"])
            assert {"401", "429"} <= documented, (method, path)
            # A route a browser token opens answers 403 to a token of another job or tag.
            refuses = role != "reader" or getattr(view, "reads_with_token", False)
            assert ("403" in documented) == refuses, (method, path, role)


def test_an_idempotent_replay_answers_a_documented_status_and_shape(api: Api) -> None:
    document = api.get("/openapi.json").get_json()
    body = {"type": "system.noop", "payload": {}}
    first = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "replay-1"})
    again = api.post("/v1/jobs", json=body, headers={"Idempotency-Key": "replay-1"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.get_json()["id"] == first.get_json()["id"]
    assert "200" in document["paths"]["/v1/jobs"]["post"]["responses"]
    jsonschema.validate(again.get_json(), _schema(document, "JobAccepted"))


def test_the_documented_request_line_limit_is_gunicorns() -> None:
    from gunicorn.config import Config

    from offload_api.openapi import MAX_REQUEST_LINE

    assert Config().limit_request_line == MAX_REQUEST_LINE


def test_a_job_type_whose_payload_has_required_fields_requires_a_payload(api: Api) -> None:
    document = api.get("/openapi.json").get_json()
    schema = _schema(document, "JobRequest")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"type": "system.sleep"}, schema)
    assert api.post("/v1/jobs", json={"type": "system.sleep"}).status_code == 422
    jsonschema.validate({"type": "system.noop"}, schema)
    assert api.post("/v1/jobs", json={"type": "system.noop"}).status_code == 202
    # So does a follow-up of such a type, and a batch's job.
    follow_up = {"type": "system.noop", "options": {"then": [{"type": "system.sleep"}]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(follow_up, schema)
    assert api.post("/v1/jobs", json=follow_up).status_code == 422
    jsonschema.validate(
        {"type": "system.noop", "options": {"then": [{"type": "system.sleep", "payload": {"ms": 1}}]}}, schema
    )
    batch = {"jobs": [{"type": "system.noop"}, {"type": "system.sleep"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(batch, _schema(document, "BatchRequest"))
    assert api.post("/v1/batches", json=batch).status_code == 422


def test_the_documented_idempotency_key_is_the_one_accepted(api: Api) -> None:
    document = api.get("/openapi.json").get_json()
    (schema,) = [
        p["schema"] for p in document["paths"]["/v1/jobs"]["post"]["parameters"] if p["name"] == "Idempotency-Key"
    ]
    # Not " a" or "a ": HTTP strips a field value's edge spaces, so the API never sees them (nor does the pattern).
    for key in ["k", "a b", "~" * 255, "", "x" * 256, "é", "a\x7fb", "a\tb"]:
        response = api.post("/v1/jobs", json={"type": "system.noop"}, headers={"Idempotency-Key": key})
        documented = jsonschema.Draft202012Validator(schema).is_valid(key)
        assert (response.status_code != 422) == documented, (key, response.get_json())


def _sse(body: str) -> list[dict[str, str]]:
    """A stream's events as an SSE client reads them (``event``, ``id``, ``data``); a block with no data is none."""
    events = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "data" in fields:
            events.append(fields)
    return events


def _check_events(document: dict, body: str) -> list[str]:
    """Check each event of a stream against ``JobEvent`` and its data against its ``contentSchema``; their names."""
    mapping = document["components"]["schemas"]["JobEvent"]["discriminator"]["mapping"]
    names = []
    for event in _sse(body):
        jsonschema.validate(event, _schema(document, "JobEvent"))
        data = document["components"]["schemas"][mapping[event["event"]].rsplit("/", 1)[1]]["properties"]["data"]
        assert data["contentMediaType"] == "application/json"
        jsonschema.validate(json.loads(event["data"]), {**data["contentSchema"], "components": document["components"]})
        names.append(event["event"])
    return names


def test_an_event_stream_is_described_one_event_at_a_time(api: Api, worker, wait_state) -> None:
    """Each event matches its name's schema in the document, and its data the schema ``contentSchema`` names."""
    document = api.get("/openapi.json").get_json()
    media = document["paths"]["/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    assert media == {"schema": {"$ref": "#/components/schemas/JobEvent"}}
    mapping = document["components"]["schemas"]["JobEvent"]["discriminator"]["mapping"]
    assert set(mapping) == {"state", "progress", "log", "cancel_requested", "error"}
    slept = api.submit("system.sleep", {"ms": 30, "steps": 2}).get_json()["id"]
    failed = api.submit("system.fail", {"permanent": True}).get_json()["id"]
    cancelled = api.submit("system.noop", delay=600).get_json()["id"]
    assert api.post(f"/v1/jobs/{cancelled}/cancel").status_code == 200
    seen: Counter[str] = Counter()
    for job_id, state in ((slept, "succeeded"), (failed, "failed"), (cancelled, "cancelled")):
        wait_state(job_id, state)
        response = api.get(f"/v1/jobs/{job_id}/events")
        assert response.mimetype == "text/event-stream"
        body = response.get_data(as_text=True)
        seen.update(_check_events(document, body))
        assert json.loads(_sse(body)[-1]["data"])["job"]["state"] == state  # the terminal event carries the job
    assert seen["state"] >= 7 and seen["log"] == 1, seen


@pytest.mark.timeout(30)
def test_live_progress_and_cancel_requested_events_are_described_too(app, api: Api, worker, wait_state) -> None:
    """The events only a live stream sends: progress as it is reported, and a cancel asked of the running job."""
    document = api.get("/openapi.json").get_json()
    job_id = api.submit("system.sleep", {"ms": 5000, "steps": 50}).get_json()["id"]

    def cancel_once_running() -> None:
        wait_state(job_id, "running")
        time.sleep(0.3)
        assert Api(app.test_client()).post(f"/v1/jobs/{job_id}/cancel").status_code == 200

    canceller = threading.Thread(target=cancel_once_running)
    canceller.start()
    body = api.get(f"/v1/jobs/{job_id}/events").get_data(as_text=True)
    canceller.join()
    names = _check_events(document, body)
    assert {"progress", "cancel_requested"} <= set(names) and names[-1] == "state", names
    assert json.loads(_sse(body)[-1]["data"])["state"] == "cancelled"


def test_a_submitted_job_links_to_its_record_events_log_and_cancel(api: Api) -> None:
    document = api.get("/openapi.json").get_json()
    operations = {op["operationId"]: (path, op) for path, item in document["paths"].items() for op in item.values()}
    responses = document["paths"]["/v1/jobs"]["post"]["responses"]
    for status in ("200", "202"):
        links = responses[status]["links"]
        assert {link["operationId"] for link in links.values()} == {
            "jobs_get_job",
            "events_job_events",
            "jobs_get_job_logs",
            "jobs_cancel_job",
        }
        for link in links.values():
            path, _ = operations[link["operationId"]]
            assert link["parameters"] == {"job_id": "$response.body#/id"} and "{job_id}" in path


def test_a_link_to_an_undocumented_view_is_refused() -> None:
    from flask import Flask

    from offload_api.openapi import build_openapi
    from offload_api.openapi_meta import Link, Operation, documented

    app = Flask(__name__)

    @app.get("/x")
    @documented(
        Operation("X", description="x", responses={200: ("x", None)}, links={200: {"Y": Link("nowhere", {}, "y")}})
    )
    def x() -> str:
        return "x"

    with pytest.raises(ValueError, match="'Y'"):
        build_openapi(app, BUILT_IN)
