"""The web push endpoints of the API against real Redis: subscriptions per tenant and user, bad input, the key."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from offload.contracts.push import MAX_SUBSCRIPTIONS_PER_USER, MAX_USERS
from offload.publish import Publisher
from offload.status.push import PushSubscriptions
from offload.vapid import new_private_key, public_key_of
from tests.support import Api
from tests.support.push import Browser, b64url


def _subscription(endpoint: str = "https://127.0.0.1:8443/send/abc", user: str = "ada") -> dict[str, Any]:
    return {"endpoint": endpoint, "keys": Browser().keys(), "expirationTime": None, "user_id": user}


def test_a_subscription_is_saved_listed_replaced_and_removed_per_tenant(api: Api) -> None:
    created = api.post("/v1/push/subscriptions", json=_subscription())
    assert created.status_code == 201
    sub = created.get_json()
    assert sub["user_id"] == "ada" and sub["endpoint"] == "https://127.0.0.1:8443/send/abc"
    assert "keys" not in sub and "auth" not in str(sub)  # the browser's secret is never shown
    # The same browser subscribing again (new keys) replaces its subscription.
    again = api.post("/v1/push/subscriptions", json=_subscription())
    assert again.status_code == 200 and again.get_json()["id"] == sub["id"]
    listed = api.get("/v1/push/subscriptions?user_id=ada").get_json()["subscriptions"]
    assert [s["id"] for s in listed] == [sub["id"]]
    # Another tenant neither sees nor removes it.
    other = api.as_("globex")
    assert other.get("/v1/push/subscriptions?user_id=ada").get_json() == {"subscriptions": []}
    assert other.call("DELETE", f"/v1/push/subscriptions/{sub['id']}").status_code == 404
    # A reader lists but does not subscribe.
    reader = api.as_("acme_reader")
    assert len(reader.get("/v1/push/subscriptions?user_id=ada").get_json()["subscriptions"]) == 1
    assert reader.post("/v1/push/subscriptions", json=_subscription()).status_code == 403
    removed = api.call("DELETE", f"/v1/push/subscriptions/{sub['id']}")
    assert removed.status_code == 200 and removed.get_json() == {**sub, "created_at": removed.get_json()["created_at"]}
    assert api.call("DELETE", f"/v1/push/subscriptions/{sub['id']}").status_code == 404
    assert api.get("/v1/push/subscriptions?user_id=ada").get_json() == {"subscriptions": []}


def test_a_browser_another_user_signs_in_on_moves_to_that_user(api: Api) -> None:
    first = api.post("/v1/push/subscriptions", json=_subscription(user="ada")).get_json()
    moved = api.post("/v1/push/subscriptions", json=_subscription(user="bob"))
    assert moved.status_code == 200 and moved.get_json()["id"] == first["id"]
    assert api.get("/v1/push/subscriptions?user_id=ada").get_json()["subscriptions"] == []
    assert [s["user_id"] for s in api.get("/v1/push/subscriptions?user_id=bob").get_json()["subscriptions"]] == ["bob"]


def test_a_user_keeps_at_most_the_newest_subscriptions(api: Api) -> None:
    ids = []
    for index in range(MAX_SUBSCRIPTIONS_PER_USER + 2):
        response = api.post("/v1/push/subscriptions", json=_subscription(f"https://127.0.0.1:8443/send/{index}"))
        assert response.status_code == 201
        ids.append(response.get_json()["id"])
    listed = [s["id"] for s in api.get("/v1/push/subscriptions?user_id=ada").get_json()["subscriptions"]]
    assert sorted(listed) == sorted(ids[2:])
    # The two oldest are gone from the tenant's index too: removing them finds nothing.
    assert api.call("DELETE", f"/v1/push/subscriptions/{ids[0]}").status_code == 404


def _bad_key() -> str:
    """65 bytes starting with 0x04 that are not a point of P-256."""
    return b64url(b"\x04" + b"\x01" * 64)


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"user_id": None}, "user_id", "string_type"),
        ({"user_id": "ada:admin"}, "user_id", "string_pattern_mismatch"),
        ({"user_id": "a" * 129}, "user_id", "string_too_long"),
        ({"endpoint": "https://10.0.0.8/push"}, "endpoint", "url_not_allowed"),
        ({"endpoint": "https://169.254.169.254/latest"}, "endpoint", "url_not_allowed"),
        ({"endpoint": "ftp://push.example.com/x"}, "endpoint", "scheme_not_allowed"),
        ({"endpoint": "https://user:pw@push.example.com/x"}, "endpoint", "url_not_allowed"),
        ({"keys": {"p256dh": b64url(b"\x04" + b"\x00" * 63), "auth": b64url(b"a" * 16)}}, "keys.p256dh", "invalid_key"),
        ({"keys": {"p256dh": _bad_key(), "auth": b64url(b"a" * 16)}}, "keys.p256dh", "invalid_key"),
        ({"keys": {"p256dh": "not base64!", "auth": b64url(b"a" * 16)}}, "keys.p256dh", "invalid_key"),
        ({"keys": {"p256dh": Browser().keys()["p256dh"], "auth": b64url(b"a" * 15)}}, "keys.auth", "invalid_key"),
        ({"keys": {"p256dh": Browser().keys()["p256dh"]}}, "keys.auth", "missing"),
        ({"extra": 1}, "extra", "extra_forbidden"),
    ],
)
def test_a_bad_subscription_is_422_naming_the_field(api: Api, change: dict[str, Any], field: str, rule: str) -> None:
    body = {**_subscription(), **change}
    if change.get("user_id", "") is None:
        del body["user_id"]
        rule = "missing"
    response = api.post("/v1/push/subscriptions", json=body)
    assert response.status_code == 422, response.get_json()
    problems = response.get_json()["errors"]
    assert any(p["field"] == field and p["rule"] == rule for p in problems), problems
    assert api.get("/v1/push/subscriptions?user_id=ada").get_json() == {"subscriptions": []}


@pytest.mark.parametrize("query", ["", "?user_id=", "?user_id=a%20b", "?user_id=" + "a" * 129])
def test_listing_without_a_valid_user_id_is_422(api: Api, query: str) -> None:
    response = api.get(f"/v1/push/subscriptions{query}")
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] == "user_id"


def test_the_public_key_is_what_a_push_worker_registered_and_needs_no_api_key(api: Api, publisher: Publisher) -> None:
    missing = api.anonymous_get("/v1/push/vapid-public-key")
    assert missing.status_code == 404 and missing.get_json()["error"] == "push_not_configured"
    key = public_key_of(new_private_key())
    assert PushSubscriptions(publisher.store).register_public_key(key) is None
    found = api.anonymous_get("/v1/push/vapid-public-key")
    assert found.status_code == 200 and found.get_json() == {"public_key": key}
    assert len(found.get_json()["public_key"]) == 87  # 65 bytes, base64url without padding


@pytest.mark.parametrize(
    ("payload", "field", "rule"),
    [
        ({"title": "x"}, "payload", "push_audience"),
        ({"user_id": "a", "user_ids": ["b"], "title": "x"}, "payload", "push_audience"),
        ({"user_ids": [f"u{i}" for i in range(MAX_USERS + 1)], "title": "x"}, "payload.user_ids", "too_long"),
        ({"user_id": "a"}, "payload.title", "missing"),
        ({"user_id": "a", "title": "x", "urgency": "urgent"}, "payload.urgency", "literal_error"),
        ({"user_id": "a", "title": "x", "topic": "has space"}, "payload.topic", "string_pattern_mismatch"),
        ({"user_id": "a", "title": "x", "ttl": -1}, "payload.ttl", "greater_than_equal"),
        ({"user_id": "a", "title": "x", "url": "javascript:alert(1)"}, "payload.url", "string_pattern_mismatch"),
        ({"user_id": "a", "title": "x", "icon": "//evil.example.com/i.png"}, "payload.icon", "string_pattern_mismatch"),
    ],
)
def test_a_bad_push_send_is_422_naming_the_field(api: Api, payload: dict[str, Any], field: str, rule: str) -> None:
    response = api.submit("push.send", payload)
    assert response.status_code == 422, response.get_json()
    problems = response.get_json()["errors"]
    assert any(p["field"] == field and p["rule"] == rule for p in problems), problems


def test_the_openapi_document_describes_the_push_endpoints_and_their_answers_match(api: Api) -> None:
    document = api.get("/openapi.json").get_json()
    paths = document["paths"]
    assert set(paths["/v1/push/subscriptions"]) == {"get", "post"}
    assert set(paths["/v1/push/subscriptions/{sub_id}"]) == {"delete"}
    assert paths["/v1/push/vapid-public-key"]["get"]["security"] == []
    assert "push.send" in str(document["components"]["schemas"]["JobRequest"])
    request = document["components"]["schemas"]["NewPushSubscription"]
    body = _subscription()
    jsonschema.validate(body, {**request, "components": document["components"]})
    created = api.post("/v1/push/subscriptions", json=body)
    schema = paths["/v1/push/subscriptions"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    jsonschema.validate(created.get_json(), {**schema, "components": document["components"]})
    listing = api.get("/v1/push/subscriptions?user_id=ada").get_json()
    schema = paths["/v1/push/subscriptions"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    jsonschema.validate(listing, {**schema, "components": document["components"]})
