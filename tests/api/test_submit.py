"""POST /v1/jobs: what is accepted, and the exact error for each kind of bad input."""

from __future__ import annotations

import json
import threading

import pytest

from tests.support import Api


def test_a_valid_job_is_accepted_with_links_and_recorded_as_queued(api: Api) -> None:
    response = api.submit("system.sleep", {"ms": 10})
    assert response.status_code == 202
    body = response.get_json()
    assert body["state"] == "queued" and response.headers["Location"] == body["status_url"]
    assert body["events_url"].endswith(f"/v1/jobs/{body['id']}/events")
    job = api.get(f"/v1/jobs/{body['id']}").get_json()
    assert job["state"] == "queued" and job["payload"] == {"ms": 10, "steps": 10} and job["tenant"] == "acme"
    assert [h["state"] for h in job["history"]] == ["queued"]


def test_options_are_recorded(api: Api) -> None:
    body = api.submit(
        "system.fail", {}, priority="high", max_retries=5, callback_url="http://127.0.0.1:9/hook"
    ).get_json()
    job = api.get(f"/v1/jobs/{body['id']}").get_json()
    assert (job["priority"], job["max_retries"], job["callback_url"]) == ("high", 5, "http://127.0.0.1:9/hook")


def test_a_delayed_job_is_scheduled(api: Api) -> None:
    body = api.submit("system.noop", delay=2700).get_json()
    job = api.get(f"/v1/jobs/{body['id']}").get_json()
    assert body["state"] == job["state"] == "scheduled" and job["scheduled_for"] is not None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"ms": "100"}, "payload.ms"),
        ({"ms": True}, "payload.ms"),
        ({"ms": -1}, "payload.ms"),
        ({"ms": 10**12}, "payload.ms"),
        ({"ms": 1.5}, "payload.ms"),
        ({}, "payload.ms"),
        ({"ms": 1, "tenant_id": "B"}, "payload.tenant_id"),
    ],
)
def test_wrong_payloads_are_422_naming_the_field(api: Api, payload, field) -> None:
    response = api.submit("system.sleep", payload)
    assert response.status_code == 422
    body = response.get_json()
    assert body["error"] == "validation_failed" and field in [e["field"] for e in body["errors"]]


@pytest.mark.parametrize(
    "options",
    [
        {"eta": 0},
        {"max_retries": 999},
        {"priority": "urgent"},
        {"delay": -1},
        {"delay": 31 * 86400},
        {"pipe_target": "x"},
        {"max_retries": "3"},
    ],
)
def test_wrong_or_smuggled_options_are_422(api: Api, options) -> None:
    response = api.post("/v1/jobs", json={"type": "system.fail", "payload": {}, "options": options})
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"][0]["field"].startswith("options")


@pytest.mark.parametrize(
    "body",
    [
        {"type": "system.noop", "payload": {}, "tenant_id": "globex"},
        {"type": "system.noop", "payload": {}, "status": "succeeded"},
    ],
)
def test_unknown_top_level_fields_are_422(api: Api, body) -> None:
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] in body.keys() - {
        "type",
        "payload",
    }


@pytest.mark.parametrize("job_type", ["os.system", "__import__", "system.noop ", 42, None, "x" * 5000])
def test_unknown_job_types_are_422(api: Api, job_type) -> None:
    response = api.post("/v1/jobs", json={"type": job_type, "payload": {}})
    assert response.status_code == 422 and response.get_json()["error"] in {"unknown_job_type", "validation_failed"}
    assert len(response.get_data()) < 1000


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::1]/",
        "http://2130706433/",
        "file:///etc/passwd",
        "http://user:pass@example.com/",
        "https://8.8.8.8:6379/",
        "gopher://x/",
    ],
)
def test_callback_urls_that_are_not_public_are_refused(api: Api, url) -> None:
    response = api.submit("system.noop", callback_url=url)
    assert response.status_code == 422
    assert response.get_json()["error"] in {"url_not_allowed", "scheme_not_allowed"}


def test_malformed_json_is_400(api: Api) -> None:
    response = api.post("/v1/jobs", data='{"type":', headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_json"


@pytest.mark.parametrize("raw", ['{"type":"system.sleep","payload":{"ms":NaN}}', '{"ms": Infinity}', "[" * 100_000])
def test_nan_and_deep_nesting_are_400_not_500(api: Api, raw) -> None:
    response = api.post("/v1/jobs", data=raw, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 413) and response.get_json()["error"] in {"invalid_json", "payload_too_large"}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_other_content_types_are_415(api: Api, content_type) -> None:
    response = api.post("/v1/jobs", data="type=system.noop", headers={"Content-Type": content_type})
    assert response.status_code == 415 and response.get_json()["error"] == "unsupported_media_type"


def test_a_body_over_the_limit_is_413_before_parsing(api: Api) -> None:
    big = json.dumps({"type": "system.noop", "payload": {"echo": "x" * (1024 * 1024)}})
    response = api.post("/v1/jobs", data=big, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.get_json()["error"] == "payload_too_large"


def test_strings_over_the_contract_limit_are_422(api: Api) -> None:
    response = api.submit("system.noop", {"echo": "x" * 1001})
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] == "payload.echo"


def test_same_idempotency_key_and_body_return_the_same_job(api: Api) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = api.post("/v1/jobs", json={"type": "system.noop", "payload": {}}, headers=headers)
    again = api.post("/v1/jobs", json={"type": "system.noop", "payload": {}}, headers=headers)
    assert first.status_code == 202 and again.status_code == 200
    assert first.get_json()["id"] == again.get_json()["id"]


def test_same_idempotency_key_with_another_body_is_409(api: Api) -> None:
    headers = {"Idempotency-Key": "order-43"}
    first = api.post("/v1/jobs", json={"type": "system.noop", "payload": {}}, headers=headers).get_json()
    other = api.post("/v1/jobs", json={"type": "system.noop", "payload": {"echo": "x"}}, headers=headers)
    assert other.status_code == 409
    assert other.get_json()["error"] == "idempotency_key_reused" and other.get_json()["job_id"] == first["id"]


def test_idempotency_keys_are_per_tenant(api: Api) -> None:
    headers = {"Idempotency-Key": "shared"}
    a = api.post("/v1/jobs", json={"type": "system.noop"}, headers=headers).get_json()
    b = api.as_("globex").post("/v1/jobs", json={"type": "system.noop"}, headers=headers).get_json()
    assert a["id"] != b["id"]


def test_five_concurrent_submissions_with_one_key_make_one_job(app) -> None:
    ids, statuses = [], []

    def submit() -> None:
        client = Api(app.test_client())
        response = client.post("/v1/jobs", json={"type": "system.noop"}, headers={"Idempotency-Key": "race"})
        statuses.append(response.status_code)
        ids.append(response.get_json()["id"])

    threads = [threading.Thread(target=submit) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1 and sorted(statuses) == [200, 200, 200, 200, 202]


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "a\tb"])
def test_bad_idempotency_keys_are_422(api: Api, key) -> None:
    response = api.post("/v1/jobs", json={"type": "system.noop"}, headers={"Idempotency-Key": key})
    assert response.status_code in (422, 400)


def test_follow_ups_are_validated_at_submission(api: Api) -> None:
    response = api.submit("system.noop", then=[{"type": "system.sleep", "payload": {"ms": "x"}}])
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] == "options.then[0].payload.ms"
    response = api.submit("system.noop", then=[{"type": "nope.nope"}])
    assert response.status_code == 422


def _problems(response) -> list[tuple[str, str | None, str]]:
    assert response.status_code == 422, response.get_json()
    return [(e["field"], e["pointer"], e["rule"]) for e in response.get_json()["errors"]]


def test_each_problem_names_its_field_as_a_path_and_a_json_pointer_and_the_rule_it_broke(api: Api) -> None:
    """Where a 422's items come from: pydantic, the URL guard, a follow-up, a batch, a query parameter, a header."""
    import jsonschema

    document = api.get("/openapi.json").get_json()
    schema = {"$ref": "#/components/schemas/Error", "components": document["components"]}
    cases = [
        (api.submit("system.sleep", {"ms": "5"}), [("payload.ms", "/payload/ms", "int_type")]),
        (api.submit("system.sleep", {"ms": 1, "x": 1}), [("payload.x", "/payload/x", "extra_forbidden")]),
        (api.post("/v1/jobs", json={"payload": {}}), [("type", "/type", "missing")]),
        (
            api.submit("system.noop", max_retries=99),
            [("options.max_retries", "/options/max_retries", "less_than_equal")],
        ),
        (
            api.submit("system.noop", callback_url="ftp://example.com/hook"),
            [("options.callback_url", "/options/callback_url", "scheme_not_allowed")],
        ),
        (
            api.submit("system.noop", then=[{"type": "system.sleep", "payload": {"ms": -1}}]),
            [("options.then[0].payload.ms", "/options/then/0/payload/ms", "greater_than_equal")],
        ),
        (
            api.post("/v1/batches", json={"jobs": [{"type": "system.noop"}, {"type": "system.sleep", "payload": {}}]}),
            [("jobs[1].payload.ms", "/jobs/1/payload/ms", "missing")],
        ),
        (api.post("/v1/batches", json={"jobs": []}), [("jobs", "/jobs", "too_short")]),
        (api.post("/v1/batches", json={"jobs": [], "x": 1}), [("x", "/x", "extra_forbidden")]),
        (api.get("/v1/jobs?limit=0"), [("limit", None, "greater_than_equal")]),
        (api.get("/v1/jobs?state=nope"), [("state", None, "enum")]),
        (
            api.post("/v1/jobs", json={"type": "system.noop"}, headers={"Idempotency-Key": "x" * 256}),
            [("Idempotency-Key", None, "string_too_long")],
        ),
    ]
    for response, expected in cases:
        assert _problems(response) == expected
        jsonschema.validate(response.get_json(), schema)
