"""Authentication and tenancy (reliability-security.md §7.1)."""

from __future__ import annotations

import uuid

import pytest

from tests.support import KEYS, Api


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer nope",
        f"Bearer {KEYS['acme']} ",
        f"Bearer {KEYS['acme'].upper()}",
        f"Basic {KEYS['acme']}",
        KEYS["acme"],
        "Bearer",
    ],
)
def test_missing_or_invalid_keys_are_401_with_www_authenticate_and_the_same_body(client, header) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = client.get("/v1/jobs", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="offload"'
    assert response.get_json() == {
        "error": "unauthorized",
        "detail": "A valid API key is required: send 'Authorization: Bearer <key>'.",
    }


def test_a_key_in_the_query_string_is_not_accepted(client) -> None:
    assert client.get(f"/v1/jobs?api_key={KEYS['acme']}").status_code == 401


def test_a_reader_key_may_read_but_not_submit_cancel_or_retry(api: Api) -> None:
    job = api.submit().get_json()
    reader = api.as_("acme_reader")
    assert reader.get(f"/v1/jobs/{job['id']}").status_code == 200
    for path in ("/v1/jobs", f"/v1/jobs/{job['id']}/cancel", f"/v1/jobs/{job['id']}/retry", "/v1/batches"):
        response = reader.post(path, json={"type": "system.noop"})
        assert response.status_code == 403 and response.get_json()["error"] == "forbidden"


def test_another_tenants_job_is_404_exactly_like_an_unknown_one(api: Api) -> None:
    job = api.submit().get_json()
    other = api.as_("globex")
    theirs = other.get(f"/v1/jobs/{job['id']}")
    unknown = other.get(f"/v1/jobs/{uuid.uuid4()}")
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.get_json()["error"] == unknown.get_json()["error"] == "not_found"
    for action in ("cancel", "retry"):
        assert other.post(f"/v1/jobs/{job['id']}/{action}").status_code == 404
    assert other.get(f"/v1/jobs/{job['id']}/events").status_code == 404
    history = api.get(f"/v1/jobs/{job['id']}").get_json()["history"]
    assert [h["state"] for h in history] == ["queued"]  # unchanged by the other tenant's attempts


def test_listing_shows_only_the_callers_tenant_but_admins_see_all(api: Api) -> None:
    mine = api.submit().get_json()["id"]
    theirs = api.as_("globex").submit().get_json()["id"]
    assert [j["id"] for j in api.get("/v1/jobs").get_json()["jobs"]] == [mine]
    everyone = {j["id"] for j in api.as_("admin").get("/v1/jobs").get_json()["jobs"]}
    assert everyone == {mine, theirs}
    only_globex = api.as_("admin").get("/v1/jobs?tenant=globex").get_json()["jobs"]
    assert [j["id"] for j in only_globex] == [theirs]
    assert api.as_("admin").get(f"/v1/jobs/{mine}").status_code == 200


@pytest.mark.parametrize(
    "job_id", ["1", "../../etc/passwd", "%2e%2e", "x" * 300, "00000000-0000-0000-0000-00000000000g"]
)
def test_malformed_job_ids_are_404(api: Api, job_id) -> None:
    assert api.get(f"/v1/jobs/{job_id}").status_code == 404


def test_unknown_routes_and_methods_answer_json(api: Api) -> None:
    assert api.get("/v2/nothing").get_json()["error"] == "not_found"
    response = api.call("PUT", "/v1/jobs")
    assert response.status_code == 405 and response.get_json()["error"] == "method_not_allowed"
    assert response.headers["Allow"]


def test_no_cors_header_is_sent_to_foreign_origins(api: Api) -> None:
    response = api.call(
        "OPTIONS", "/v1/jobs", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in response.headers
