"""Browser tokens (``?token=``) and CORS (issue 22): scoped, read-only, expiring, and only where they apply."""

from __future__ import annotations

import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from offload.publish import Publisher
from offload.signing import ReadTokens
from offload_api.access_log import redact_token
from offload_api.app import create_app
from tests.support import KEYS, Api, make_settings

ORIGIN = "https://app.example.test"
SECRET = make_settings().signing_key.get_secret_value()


@pytest.fixture
def app(publisher: Publisher) -> Flask:
    return create_app(make_settings(cors_origins=ORIGIN, sse_keepalive=0.2), publisher=publisher)


def _anonymous(client: FlaskClient, path: str, **kw: object) -> tuple[int, dict[str, str], dict[str, object]]:
    response = client.get(path, **kw)
    body = response.get_json(silent=True) or {}
    return response.status_code, dict(response.headers), body


def test_a_jobs_token_reads_its_status_and_events_and_nothing_else(api: Api, client: FlaskClient) -> None:
    accepted = api.post("/v1/jobs", json={"type": "system.noop", "token": True}).get_json()
    job_id, token = accepted["id"], accepted["token"]
    assert accepted["token_expires_at"].endswith("Z")
    other = api.submit("system.noop").get_json()["id"]

    status, _, job = _anonymous(client, f"/v1/jobs/{job_id}?token={token}")
    assert status == 200 and job["id"] == job_id
    events = client.get(f"/v1/jobs/{job_id}/events?token={token}", buffered=False)
    assert events.status_code == 200 and events.mimetype == "text/event-stream"
    events.close()

    status, _, body = _anonymous(client, f"/v1/jobs/{other}?token={token}")
    assert (status, body["error"]) == (403, "token_scope")
    status, _, body = _anonymous(client, f"/v1/jobs/{other}/events?token={token}")
    assert (status, body["error"]) == (403, "token_scope")
    for path in (f"/v1/jobs/{job_id}/logs", "/v1/jobs", "/v1/job-types", f"/v1/events?token={token}&tag=x"):
        status, _, body = _anonymous(client, path + ("" if "token=" in path else f"?token={token}"))
        assert status in (401, 403) and body["error"] in ("token_not_accepted", "token_scope"), (path, body)
    cancel = client.post(f"/v1/jobs/{job_id}/cancel?token={token}")
    assert cancel.status_code == 401 and cancel.get_json()["error"] == "token_not_accepted"
    # A key and a token on another route: the token is still refused, never silently ignored.
    assert api.get(f"/v1/jobs?token={token}").get_json()["error"] == "token_not_accepted"


def test_a_flows_token_reads_its_status_and_events_only(api: Api, client: FlaskClient) -> None:
    nodes = [{"name": "a", "type": "system.noop"}, {"name": "b", "type": "system.noop", "needs": ["a"]}]
    flow = api.post("/v1/flows", json={"nodes": nodes}).get_json()
    other = api.post("/v1/flows", json={"nodes": nodes[:1]}).get_json()
    issued = api.post(f"/v1/flows/{flow['id']}/token", json={"ttl": 60})
    assert issued.status_code == 201 and issued.get_json()["scope"] == f"flow:{flow['id']}"
    token = issued.get_json()["token"]
    status, headers, body = _anonymous(client, f"/v1/flows/{flow['id']}?token={token}", headers={"Origin": ORIGIN})
    assert status == 200 and body["id"] == flow["id"] and body["tenant"] == "acme"
    assert headers.get("Access-Control-Allow-Origin") == ORIGIN
    events = client.get(f"/v1/flows/{flow['id']}/events?token={token}", buffered=False)
    assert events.status_code == 200 and events.mimetype == "text/event-stream"
    events.close()
    status, _, body = _anonymous(client, f"/v1/flows/{other['id']}?token={token}")
    assert (status, body["error"]) == (403, "token_scope")
    node_job = api.get(f"/v1/flows/{flow['id']}").get_json()["nodes"][0]["job_id"]
    status, _, body = _anonymous(client, f"/v1/jobs/{node_job}?token={token}")  # not its jobs: they have tokens
    assert (status, body["error"]) == (403, "token_scope")
    cancel = client.post(f"/v1/flows/{flow['id']}/cancel?token={token}")
    assert cancel.status_code == 401 and cancel.get_json()["error"] == "token_not_accepted"
    assert api.post("/v1/flows/no-such-flow/token").status_code == 404
    assert api.as_("globex").post(f"/v1/flows/{flow['id']}/token").status_code == 404


def test_an_expired_a_tampered_and_a_foreign_token_are_401s(api: Api, client: FlaskClient, app: Flask) -> None:
    job_id = api.submit("system.noop").get_json()["id"]
    tokens = ReadTokens(SECRET)
    expired = tokens.encode(tokens.issue("acme", f"job:{job_id}", ttl=60, now=time.time() - 61))
    status, headers, body = _anonymous(client, f"/v1/jobs/{job_id}?token={expired}")
    assert (status, body["error"]) == (401, "token_expired") and "WWW-Authenticate" in headers
    good = api.post(f"/v1/jobs/{job_id}/token").get_json()["token"]
    for bad in (good[:-2] + ("AA" if not good.endswith("AA") else "BB"), "garbage", "a.b.c"):
        status, _, body = _anonymous(client, f"/v1/jobs/{job_id}?token={bad}")
        assert (status, body["error"]) == (401, "invalid_token"), bad
    forged = ReadTokens("another-key-entirely-0123456789").issue("acme", f"job:{job_id}", ttl=60)
    status, _, body = _anonymous(client, f"/v1/jobs/{job_id}?token={ReadTokens('x' * 32).encode(forged)}")
    assert (status, body["error"]) == (401, "invalid_token")
    # Another tenant's token for the same job id reads nothing: the job is not theirs.
    theirs = tokens.encode(tokens.issue("globex", f"job:{job_id}", ttl=60))
    assert _anonymous(client, f"/v1/jobs/{job_id}?token={theirs}")[0] == 404


def test_token_requests_are_checked(api: Api) -> None:
    job_id = api.submit("system.noop").get_json()["id"]
    made = api.post(f"/v1/jobs/{job_id}/token", json={"ttl": 60})
    assert made.status_code == 201 and made.get_json()["scope"] == f"job:{job_id}"
    for body in ({"ttl": 5}, {"ttl": 86_401}, {"ttl": "60"}, {"scope": "tenant"}, [1]):
        response = api.post(f"/v1/jobs/{job_id}/token", json=body)
        assert response.status_code == 422, body
    assert api.as_("globex").post(f"/v1/jobs/{job_id}/token").status_code == 404
    assert api.post("/v1/events/token", json={"tag": "no spaces"}).status_code == 422
    assert api.post("/v1/events/token", json={"tag": "fine"}).get_json()["scope"] == "tag:fine"
    assert api.as_("acme_reader").post("/v1/events/token").get_json()["scope"] == "tenant"


def test_a_tag_token_opens_that_tags_feed_only_and_a_tenant_token_any(api: Api, client: FlaskClient) -> None:
    tag_token = api.post("/v1/events/token", json={"tag": "checkout"}).get_json()["token"]
    tenant_token = api.post("/v1/events/token").get_json()["token"]
    opened = client.get(f"/v1/events?tag=checkout&token={tag_token}", buffered=False)
    assert opened.status_code == 200
    opened.close()
    for path in (f"/v1/events?tag=other&token={tag_token}", f"/v1/events?token={tag_token}"):
        status, _, body = _anonymous(client, path)
        assert (status, body["error"]) == (403, "token_scope"), path
    job_id = api.submit("system.noop", tags=["checkout"]).get_json()["id"]
    assert _anonymous(client, f"/v1/jobs/{job_id}?token={tag_token}")[2]["error"] == "token_scope"
    for path in (f"/v1/events?token={tenant_token}", f"/v1/events?tag=anything&token={tenant_token}"):
        response = client.get(path, buffered=False)
        assert response.status_code == 200, path
        response.close()


def test_cors_answers_preflights_of_the_token_routes_for_configured_origins_only(api: Api, client: FlaskClient) -> None:
    job_id = api.submit("system.noop").get_json()["id"]
    asks = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "last-event-id"}
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/events", "/v1/events"):
        response = client.options(path, headers=asks)
        assert response.status_code == 204, path
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Last-Event-ID" in response.headers["Access-Control-Allow-Headers"]
        assert response.headers["Access-Control-Allow-Methods"] == "GET" and "Origin" in response.headers["Vary"]

    refusals = [
        ({**asks, "Origin": "https://evil.example.test"}, "cors_origin_not_allowed"),
        ({**asks, "Access-Control-Request-Method": "DELETE"}, "cors_method_not_allowed"),
        ({**asks, "Access-Control-Request-Headers": "authorization"}, "cors_header_not_allowed"),
    ]
    for headers, code in refusals:
        response = client.options("/v1/events", headers=headers)
        assert response.status_code == 403 and response.get_json()["error"] == code
        assert "Access-Control-Allow-Origin" not in response.headers

    # No CORS anywhere else: not on a submission's preflight, not on a key's read of a list.
    submit = client.options("/v1/jobs", headers={**asks, "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in submit.headers
    assert "Access-Control-Allow-Origin" not in api.get("/v1/jobs", headers={"Origin": ORIGIN}).headers

    token = api.post(f"/v1/jobs/{job_id}/token").get_json()["token"]
    read = client.get(f"/v1/jobs/{job_id}?token={token}", headers={"Origin": ORIGIN})
    assert read.status_code == 200 and read.headers["Access-Control-Allow-Origin"] == ORIGIN
    refused = client.get(f"/v1/jobs/{job_id}?token=garbage", headers={"Origin": ORIGIN})
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == ORIGIN  # readable
    foreign = client.get(f"/v1/jobs/{job_id}?token={token}", headers={"Origin": "https://evil.example.test"})
    assert "Access-Control-Allow-Origin" not in foreign.headers


def test_the_access_log_never_shows_a_token() -> None:
    line = "GET /v1/events?tag=a&token=eyJhbGc.sig-_x&last_event_id=1-0 HTTP/1.1"
    assert redact_token(line) == "GET /v1/events?tag=a&token=[redacted]&last_event_id=1-0 HTTP/1.1"
    assert redact_token("token=abc") == "token=[redacted]" and redact_token("/v1/jobs/x") == "/v1/jobs/x"


def test_the_admin_job_page_follows_the_jobs_stream_with_a_job_token_instead_of_polling(
    app: Flask, client: FlaskClient, api: Api
) -> None:
    job_id = api.submit("system.noop").get_json()["id"]
    login = client.get("/admin/login").get_data(as_text=True)
    csrf = login.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    client.post("/admin/login", data={"key": KEYS["admin"], "csrf_token": csrf})
    html = client.get(f"/admin/jobs/{job_id}").get_data(as_text=True)
    events_url = html.split('data-events-url="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert events_url.startswith(f"/v1/jobs/{job_id}/events?token=") and "last_event_id=1" in events_url
    token = events_url.split("token=", 1)[1].split("&", 1)[0]
    assert ReadTokens(SECRET).decode(token).scope == f"job:{job_id}"
    assert client.get(f"/admin/jobs/{job_id}/state").status_code == 404  # the polling endpoint is gone
