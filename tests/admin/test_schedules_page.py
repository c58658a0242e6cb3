"""Issue 22: the schedules page lists every schedule and pauses, resumes, runs and deletes a tenant's one,
behind sign-in and the CSRF token; the shipped ones are read-only there too."""

from __future__ import annotations

import re

from flask import Flask

from offload.publish import Publisher
from tests.support import KEYS, Api


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_the_schedules_page_pauses_resumes_runs_and_deletes_a_tenants_schedule(
    app: Flask, api: Api, publisher: Publisher
) -> None:
    made = api.post("/v1/schedules", json={"name": "hourly noop", "cron": "0 * * * *", "job": {"type": "system.noop"}})
    sid = made.get_json()["id"]
    client = app.test_client()
    assert client.post(f"/admin/schedules/{sid}/pause").status_code == 403  # not signed in
    client.post("/admin/login", data={"key": KEYS["admin"], "csrf_token": _token(client.get("/admin/login").text)})
    page = client.get("/admin/schedules").text
    assert "hourly noop" in page and "acme" in page and f'id="pause-{sid}"' in page and "stats.aggregate" in page
    assert "shipped, read-only" in page
    assert client.post(f"/admin/schedules/{sid}/pause", data={"csrf_token": "forged"}).status_code == 403
    paused = client.post(f"/admin/schedules/{sid}/pause", data={"csrf_token": _token(page)}, follow_redirects=True)
    assert f"Paused {sid}" in paused.text and f'id="resume-{sid}"' in paused.text and "paused since" in paused.text
    assert api.get(f"/v1/schedules/{sid}").get_json()["paused"] is True
    resumed = client.post(f"/admin/schedules/{sid}/resume", data={"csrf_token": _token(page)}, follow_redirects=True)
    assert f"Resumed {sid}" in resumed.text and api.get(f"/v1/schedules/{sid}").get_json()["paused"] is False
    ran = client.post(f"/admin/schedules/{sid}/run", data={"csrf_token": _token(page)}, follow_redirects=True).text
    job_id = re.search(r"as job ([0-9a-f-]{36})", ran)
    assert job_id is not None
    record = publisher.get(job_id.group(1))
    assert record is not None and record.tenant == "acme" and record.type == "system.noop"
    assert f"/admin/jobs/{job_id.group(1)}" in ran  # the last run links to its job
    shipped = "stats.aggregate.hourly"
    assert client.post(f"/admin/schedules/{shipped}/pause", data={"csrf_token": _token(page)}).status_code == 403
    assert client.post(f"/admin/schedules/{sid}/explode", data={"csrf_token": _token(page)}).status_code == 404
    deleted = client.post(f"/admin/schedules/{sid}/delete", data={"csrf_token": _token(page)}, follow_redirects=True)
    assert f"Deleted {sid}" in deleted.text and f'id="pause-{sid}"' not in deleted.text
    assert api.get(f"/v1/schedules/{sid}").status_code == 404
