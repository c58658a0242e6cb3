"""reliability-security.md §7.1-7.2, rows 1-20: every hostile request gets its clear 4xx, and no answer
carries a traceback, a broker or Redis URL, or a password (issue 9)."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest

from offload.publish import Publisher
from tests.support import KEYS, Api
from tests.support.security import clean

JSON = {"Content-Type": "application/json"}


def _raw(client: Any, method: str, path: str, key: str | None = "acme", **kw: Any) -> Any:
    headers = dict(kw.pop("headers", {}))
    if key:
        headers["Authorization"] = f"Bearer {KEYS[key]}"
    return clean(client.open(path, method=method, headers=headers, **kw))


@pytest.mark.parametrize(
    ("row", "method", "path", "key", "kw", "status", "code"),
    [
        (1, "GET", "/v1/jobs", None, {}, 401, "unauthorized"),
        (
            2,
            "GET",
            "/v1/jobs",
            None,
            {"headers": {"Authorization": "Bearer not-a-key-at-all-000"}},
            401,
            "unauthorized",
        ),
        (2, "GET", "/v1/jobs", None, {"headers": {"Authorization": f"Bearer {KEYS['acme']} "}}, 401, "unauthorized"),
        (
            2,
            "GET",
            "/v1/jobs",
            None,
            {"headers": {"Authorization": f"Bearer {KEYS['acme'].upper()}"}},
            401,
            "unauthorized",
        ),
        (3, "GET", f"/v1/jobs?api_key={KEYS['acme']}", None, {}, 401, "unauthorized"),
        (4, "POST", "/v1/jobs", "acme_reader", {"json": {"type": "system.noop"}}, 403, "forbidden"),
        (
            9,
            "POST",
            "/v1/jobs",
            "acme",
            {"json": {"type": "system.noop", "tenant_id": "globex"}},
            422,
            "validation_failed",
        ),
        (
            9,
            "POST",
            "/v1/jobs",
            "acme",
            {"json": {"type": "system.noop", "status": "succeeded"}},
            422,
            "validation_failed",
        ),
        (
            9,
            "POST",
            "/v1/jobs",
            "acme",
            {"json": {"type": "system.noop", "options": {"eta": 0}}},
            422,
            "validation_failed",
        ),
        (
            9,
            "POST",
            "/v1/jobs",
            "acme",
            {"json": {"type": "system.noop", "options": {"max_retries": 999}}},
            422,
            "validation_failed",
        ),
        (10, "POST", "/v1/jobs", "acme", {"data": '{"kind":"email",', "headers": JSON}, 400, "invalid_json"),
        (
            11,
            "POST",
            "/v1/jobs",
            "acme",
            {"data": "type=system.noop", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        (11, "POST", "/v1/jobs", "acme", {"data": {"type": "system.noop"}}, 415, "unsupported_media_type"),
        (12, "POST", "/v1/jobs", "acme", {"data": "x" * (1024 * 1024 + 1), "headers": JSON}, 413, "payload_too_large"),
        (13, "POST", "/v1/jobs", "acme", {"data": "[" * 100_000, "headers": JSON}, 400, "invalid_json"),
        (
            14,
            "POST",
            "/v1/jobs",
            "acme",
            {"json": {"type": "system.sleep", "payload": {"ms": "100"}}},
            422,
            "validation_failed",
        ),
        (
            14,
            "POST",
            "/v1/jobs",
            "acme",
            {"json": {"type": "system.sleep", "payload": {"ms": True}}},
            422,
            "validation_failed",
        ),
        (
            14,
            "POST",
            "/v1/jobs",
            "acme",
            {"data": '{"type":"system.sleep","payload":{"ms":1e309}}', "headers": JSON},
            422,
            "validation_failed",
        ),
        (
            14,
            "POST",
            "/v1/jobs",
            "acme",
            {"json": {"type": "system.sleep", "payload": {"ms": -1}}},
            422,
            "validation_failed",
        ),
        (
            14,
            "POST",
            "/v1/jobs",
            "acme",
            {"data": '{"type":"system.sleep","payload":{"ms":NaN}}', "headers": JSON},
            400,
            "invalid_json",
        ),
        (15, "POST", "/v1/jobs", "acme", {"json": {"type": "os.system"}}, 422, "unknown_job_type"),
        (15, "POST", "/v1/jobs", "acme", {"json": {"type": "__import__"}}, 422, "unknown_job_type"),
        (15, "POST", "/v1/jobs", "acme", {"json": {"type": "system.noop "}}, 422, "unknown_job_type"),
        (15, "POST", "/v1/jobs", "acme", {"json": {"type": "webhook.deliver", "payload": {}}}, 422, "unknown_job_type"),
        (
            16,
            "POST",
            "/v1/jobs",
            "acme",
            {
                "json": {
                    "type": "email.batch",
                    "payload": {"template": "welcome", "recipients": [{"email": "a@example.com"}] * 1001},
                }
            },
            422,
            "validation_failed",
        ),
        (
            16,
            "POST",
            "/v1/jobs",
            "acme",
            {"json": {"type": "system.noop", "payload": {"echo": "x" * 2000}}},
            422,
            "validation_failed",
        ),
        (
            17,
            "POST",
            "/v1/jobs",
            "acme",
            {"data": '{"type":"system.noop","payload":{"echo":"\\ud800"}}', "headers": JSON},
            422,
            "validation_failed",
        ),
        (19, "PUT", "/v1/jobs", "acme", {}, 405, "method_not_allowed"),
        (19, "GET", "/v1/no-such-route", "acme", {}, 404, "not_found"),
    ],
)
def test_rows_1_to_19(
    client: Any, row: int, method: str, path: str, key: str | None, kw: dict, status: int, code: str
) -> None:
    response = _raw(client, method, path, key, **kw)
    assert (response.status_code, response.get_json()["error"]) == (status, code), (row, response.get_json())


def test_row_1_and_2_look_the_same(client: Any) -> None:
    missing = _raw(client, "GET", "/v1/jobs", None)
    wrong = _raw(client, "GET", "/v1/jobs", None, headers={"Authorization": "Bearer wrong-key-0000000000"})
    assert missing.get_json() == wrong.get_json()


def test_rows_5_and_6_another_tenants_job_is_404_and_left_alone(api: Api, client: Any, publisher: Publisher) -> None:
    theirs = publisher.publish("system.sleep", {"ms": 10}, tenant="globex").job_id
    before = publisher.store.queries.history(theirs)
    random_id = "00000000-0000-4000-8000-000000000000"
    for path, method in (
        (f"/v1/jobs/{theirs}", "GET"),
        (f"/v1/jobs/{theirs}/cancel", "POST"),
        (f"/v1/jobs/{theirs}/retry", "POST"),
    ):
        answer = _raw(client, method, path)
        unknown = _raw(client, method, path.replace(theirs, random_id))
        assert answer.status_code == unknown.status_code == 404
        assert answer.get_json()["error"] == unknown.get_json()["error"] == "not_found"
    assert publisher.store.queries.history(theirs) == before


def test_row_12_a_chunked_body_over_the_limit_is_413(client: Any) -> None:
    body = io.BytesIO(b"x" * (1024 * 1024 + 4096))  # no Content-Length: the limit applies while reading
    response = _raw(client, "POST", "/v1/jobs", headers={**JSON, "Transfer-Encoding": "chunked"}, input_stream=body)
    assert response.status_code == 413


def test_row_17_control_and_bidi_characters_are_data_not_breakage(client: Any, publisher: Publisher) -> None:
    response = _raw(client, "POST", "/v1/jobs", json={"type": "system.noop", "payload": {"echo": "a\u0000b\u202ec"}})
    assert response.status_code == 202
    job = _raw(client, "GET", f"/v1/jobs/{response.get_json()['id']}")
    assert job.get_json()["payload"]["echo"] == "a\u0000b\u202ec"  # kept as data, encoded as JSON escapes
    json.loads(job.get_data(as_text=True))


def test_row_18_an_idempotency_key_reused_with_another_body_is_409(client: Any) -> None:
    first = _raw(client, "POST", "/v1/jobs", json={"type": "system.noop"}, headers={"Idempotency-Key": "k-18"})
    same = _raw(client, "POST", "/v1/jobs", json={"type": "system.noop"}, headers={"Idempotency-Key": "k-18"})
    other = _raw(
        client,
        "POST",
        "/v1/jobs",
        json={"type": "system.noop", "payload": {"echo": "x"}},
        headers={"Idempotency-Key": "k-18"},
    )
    assert first.status_code == 202 and same.status_code == 200 and same.get_json()["id"] == first.get_json()["id"]
    assert other.status_code == 409 and other.get_json()["error"] == "idempotency_key_reused"


def test_row_20_no_cross_origin_access(client: Any) -> None:
    preflight = client.options(
        "/v1/jobs", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers
    simple = _raw(client, "GET", "/v1/jobs", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in simple.headers


def test_row_8_fifty_bad_keys_in_a_minute_then_429_with_retry_after(client: Any) -> None:
    if time.time() % 60 > 58:  # the count is per clock minute: do not straddle two
        time.sleep(61 - time.time() % 60)
    bad = {"Authorization": "Bearer guessed-key-0000000000"}
    statuses = [_raw(client, "GET", "/v1/jobs", None, headers=bad).status_code for _ in range(50)]
    assert set(statuses) == {401}
    refused = _raw(client, "GET", "/v1/jobs", None, headers=bad)
    assert refused.status_code == 429 and refused.get_json()["error"] == "too_many_attempts"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert _raw(client, "GET", "/v1/jobs").status_code == 200  # a valid key is not slowed down
