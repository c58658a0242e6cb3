"""The queues page pauses and resumes a queue (issue 10), behind sign-in and the CSRF token."""

from __future__ import annotations

import re

from flask import Flask

from offload.publish import Publisher
from tests.support import KEYS


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_the_queues_page_pauses_and_resumes_a_queue(app: Flask, publisher: Publisher) -> None:
    publisher.publish("system.noop", {}, tenant="acme")  # the system queue exists and is listed
    client = app.test_client()
    assert client.post("/admin/queues/system/pause").status_code == 403  # not signed in
    client.post("/admin/login", data={"key": KEYS["admin"], "csrf_token": _token(client.get("/admin/login").text)})
    page = client.get("/admin/").text
    assert 'id="pause-system"' in page
    assert client.post("/admin/queues/system/pause", data={"csrf_token": "forged"}).status_code == 403
    paused = client.post("/admin/queues/system/pause", data={"csrf_token": _token(page)}, follow_redirects=True).text
    assert "Paused system" in paused and 'id="resume-system"' in paused and "0 parked" in paused
    api = client.get("/v1/queues", headers={"Authorization": f"Bearer {KEYS['admin']}"}).get_json()
    assert next(q for q in api["queues"] if q["name"] == "system")["paused"] is True
    resumed = client.post(
        "/admin/queues/system/resume", data={"csrf_token": _token(paused)}, follow_redirects=True
    ).text
    assert "Resumed system" in resumed and 'id="pause-system"' in resumed
    assert client.post("/admin/queues/nosuch/pause", data={"csrf_token": _token(resumed)}).status_code == 404
