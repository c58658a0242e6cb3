"""Managed API keys through the API (issue 23): scopes, expiry, rotation overlap, bad input, the
audit log, ``offload keys`` from a shell, and the last keys known kept while Redis is down.

Two real API processes are in ``tests/system/test_managed_keys.py``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask

from offload.settings import Settings
from offload.status import StatusStore
from offload.status.api_keys import ApiKeyStore
from offload_api.extension import services_of
from offload_api.key_ring import KeyRing
from tests.helpers import VENV_BIN, wait_for
from tests.support import REDIS_URL, Api


def _make(admin: Api, **fields: Any) -> dict[str, Any]:
    response = admin.post("/v1/keys", json={"name": "test", "tenant": "acme", "role": "client", **fields})
    assert response.status_code == 201, response.json
    return dict(response.json)


def _as(api: Api, secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_scopes_limit_what_a_key_submits_and_only_admins_manage_keys(api: Api) -> None:
    admin = api.as_("admin")
    made = _make(admin, scopes=["system.*"])
    assert api.submit().status_code == 202  # the env key: no scopes
    scoped = api.post("/v1/jobs", json={"type": "system.noop", "payload": {}}, headers=_as(api, made["secret"]))
    assert scoped.status_code == 202, scoped.json
    refused = api.post("/v1/jobs", json={"type": "email.send", "payload": {}}, headers=_as(api, made["secret"]))
    assert refused.status_code == 403 and refused.json["error"] == "job_type_not_in_scope"
    assert refused.json["job_type"] == "email.send"
    batch = {"jobs": [{"type": "system.noop", "payload": {}}, {"type": "email.send", "payload": {}}]}
    refused = api.post("/v1/batches", json=batch, headers=_as(api, made["secret"]))
    assert refused.status_code == 403 and refused.json["job_type"] == "email.send"
    # A schedule of another type, made by an unscoped key of the tenant, may not be run by this one.
    welcome = {"to": [{"email": "a@example.com"}], "template": "welcome", "vars": {"name": "A"}}
    email = {"type": "email.send", "payload": welcome}
    schedule = api.post("/v1/schedules", json={"interval": 3600, "job": email})
    assert schedule.status_code == 201, schedule.json
    refused = api.post(f"/v1/schedules/{schedule.json['id']}/run", headers=_as(api, made["secret"]))
    assert refused.status_code == 403 and refused.json["job_type"] == "email.send"
    for who in ("acme", "acme_reader"):
        assert api.as_(who).get("/v1/keys").status_code == 403
    assert api.client.get("/v1/keys").status_code == 401
    listed = admin.get("/v1/keys").json
    assert [k["id"] for k in listed["keys"]] == [made["id"]] and listed["env_keys"] == 4
    assert "secret" not in admin.get(f"/v1/keys/{made['id']}").json


def test_bad_input_is_a_4xx_naming_the_field(api: Api) -> None:
    admin = api.as_("admin")
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    cases = [
        ({"tenant": "acme"}, "name"),
        ({"name": "x", "tenant": "no spaces"}, "tenant"),
        ({"name": "x", "tenant": "acme", "role": "root"}, "role"),
        ({"name": "x", "tenant": "acme", "scopes": ["a b"]}, "scopes[0]"),
        ({"name": "x", "tenant": "acme", "expires_at": past}, "expires_at"),
        ({"name": "x", "tenant": "acme", "secret": "mine"}, "secret"),
    ]
    for body, field in cases:
        answer = admin.post("/v1/keys", json=body)
        assert answer.status_code == 422, (body, answer.json)
        assert field in [e["field"] for e in answer.json["errors"]], (body, answer.json)
    made = _make(admin)
    answer = admin.post(f"/v1/keys/{made['id']}/rotate?overlap_seconds=soon")
    assert answer.status_code == 422 and answer.json["errors"][0]["field"] == "overlap_seconds"
    assert admin.post("/v1/keys/key_nope/rotate").status_code == 404
    assert admin.call("DELETE", "/v1/keys/key_nope").status_code == 404
    assert admin.call("DELETE", f"/v1/keys/{made['id']}").status_code == 200
    assert admin.post(f"/v1/keys/{made['id']}/rotate").status_code == 409


def test_expired_revoked_and_unknown_keys_all_get_the_same_401(api: Api) -> None:
    admin = api.as_("admin")
    soon = _make(admin, expires_at=(datetime.now(UTC) + timedelta(seconds=1)).isoformat())
    revoked = _make(admin)
    admin.call("DELETE", f"/v1/keys/{revoked['id']}")
    assert api.get("/v1/jobs", headers=_as(api, soon["secret"])).status_code == 200
    time.sleep(1.1)
    answers = [api.get("/v1/jobs", headers=_as(api, s)) for s in (soon["secret"], revoked["secret"], "ofk_" + "x" * 43)]
    assert {a.status_code for a in answers} == {401}
    assert len({json.dumps(a.json) for a in answers}) == 1


def test_a_rotated_key_keeps_its_old_secret_for_the_overlap_only(api: Api) -> None:
    admin = api.as_("admin")
    made = _make(admin)
    rotated = admin.post(f"/v1/keys/{made['id']}/rotate?overlap_seconds=60").json
    assert rotated["secret"] != made["secret"] and rotated["previous_secret_valid_until"]
    for secret in (made["secret"], rotated["secret"]):  # both work during the overlap
        assert api.get("/v1/jobs", headers=_as(api, secret)).status_code == 200
    again = admin.post(f"/v1/keys/{made['id']}/rotate?overlap_seconds=0").json
    assert api.get("/v1/jobs", headers=_as(api, again["secret"])).status_code == 200
    for secret in (made["secret"], rotated["secret"]):  # the first by the second rotation, the other at once
        assert api.get("/v1/jobs", headers=_as(api, secret)).status_code == 401
    entries = admin.get("/v1/audit?action=key.rotate").json["entries"]
    assert [e["outcome"] for e in entries] == ["ok: old secret works 0 s more", "ok: old secret works 60 s more"]


def test_the_cli_round_trip_is_obeyed_by_the_api_and_audited(api: Api, settings: Settings) -> None:
    environment = {
        **os.environ,
        "OFFLOAD_REDIS_URL": REDIS_URL,
        "OFFLOAD_REDIS_PREFIX": settings.redis_prefix,
        "OFFLOAD_API_KEYS": "",
    }

    def offload(*args: str) -> dict[str, Any]:
        done = subprocess.run(
            [str(VENV_BIN / "offload"), "keys", *args], env=environment, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout.splitlines()[-1]))

    made = offload("create", "--name", "from a shell", "--tenant", "acme", "--scope", "system.noop")
    wait_for(lambda: api.get("/v1/jobs", headers=_as(api, made["secret"])).status_code == 200, timeout=5)
    assert offload("list")["id"] == made["id"]
    rotated = offload("rotate", made["id"], "--overlap", "0")
    wait_for(lambda: api.get("/v1/jobs", headers=_as(api, made["secret"])).status_code == 401, timeout=5)
    assert api.get("/v1/jobs", headers=_as(api, rotated["secret"])).status_code == 200
    offload("revoke", made["id"])
    wait_for(lambda: api.get("/v1/jobs", headers=_as(api, rotated["secret"])).status_code == 401, timeout=5)
    entries = api.as_("admin").get("/v1/audit?action=key.").json["entries"]
    assert [e["action"] for e in entries] == ["key.revoke", "key.rotate", "key.create"]
    assert all(e["actor"].startswith("cli (") and e["address"] == "cli" for e in entries)
    bad = subprocess.run(
        [str(VENV_BIN / "offload"), "keys", "create", "--name", "x", "--tenant", "a b"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "--tenant" in bad.stderr and "Traceback" not in bad.stderr


def test_the_last_keys_known_keep_working_while_redis_is_down(app: Flask, api: Api) -> None:
    made = _make(api.as_("admin"))
    found = services_of(app)
    assert found is not None and found.key_ring is not None
    ring: KeyRing = found.key_ring
    ring.refresh(force=True)
    dead = StatusStore.from_url("redis://127.0.0.1:1/0", prefix="offload")  # nothing listens on port 1
    ring.store = ApiKeyStore(dead)
    ring.refresh(force=True)  # fails: the keys stay
    assert api.get("/v1/jobs", headers=_as(api, made["secret"])).status_code == 200


def test_a_managed_admin_key_signs_in_to_the_admin_page_until_it_is_revoked(app: Flask, api: Api) -> None:
    made = _make(api.as_("admin"), tenant="ops", role="admin")
    page = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.get("/admin/login").get_data(as_text=True))
    assert token is not None
    signed = page.post("/admin/login", data={"key": made["secret"], "csrf_token": token.group(1)})
    assert signed.status_code == 302 and page.get("/admin/").status_code == 200
    api.as_("admin").call("DELETE", f"/v1/keys/{made['id']}")
    assert page.get("/admin/").status_code == 302  # its session ended with it
    [entry] = api.as_("admin").get("/v1/audit?action=admin.sign_in").json["entries"]
    assert entry["actor"] == f"admin page, key {made['id']} (test)" and entry["outcome"] == "ok"
