"""The admin pages' access rules, without a browser: sign-in, CSRF, cookie flags, CSP (§7.10 row 57)."""

from __future__ import annotations

import re

from flask import Flask

from offload.publish import Publisher
from tests.support import KEYS


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


def test_pages_need_an_admin_sign_in_and_forms_need_the_csrf_token(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/admin/jobs")
    assert page.status_code == 302 and page.headers["Location"].startswith("/admin/login")
    assert client.post("/admin/jobs/x/retry").status_code == 403  # no session at all

    login = client.get("/admin/login")
    assert "script-src 'self'" in login.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in login.headers["Content-Security-Policy"]
    token = _token(login.get_data(as_text=True))
    refused = client.post("/admin/login", data={"key": KEYS["acme"], "csrf_token": token})
    assert refused.status_code == 200 and "not an admin API key" in refused.get_data(as_text=True)
    assert client.post("/admin/login", data={"key": KEYS["admin"]}).status_code == 403  # no token

    signed = client.post("/admin/login", data={"key": KEYS["admin"], "csrf_token": token})
    assert signed.status_code == 302
    cookie = signed.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/admin" in cookie
    assert KEYS["admin"] not in cookie

    jobs = client.get("/admin/jobs")
    assert jobs.status_code == 200 and "<h1>Jobs</h1>" in jobs.get_data(as_text=True)
    forged = client.post("/admin/dead-letters/system/purge", data={"confirm": "system", "csrf_token": "wrong"})
    assert forged.status_code == 403 and forged.get_json()["error"] == "csrf_failed"


def test_text_from_jobs_is_escaped(app: Flask, publisher: Publisher) -> None:
    job_id = publisher.publish("system.noop", {"echo": "<script>alert(1)</script>"}, tenant="acme").job_id
    client = app.test_client()
    token = _token(client.get("/admin/login").get_data(as_text=True))
    client.post("/admin/login", data={"key": KEYS["admin"], "csrf_token": token})
    html = client.get(f"/admin/jobs/{job_id}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
