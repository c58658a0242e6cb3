"""Per-job logs (issue 10): bounded, one line each, written only by the running attempt, shown on
the job's admin page."""

from __future__ import annotations

import re

from flask import Flask

from offload.publish import Publisher
from offload.status.shapes import MAX_LOG_LINE, MAX_LOG_LINES
from tests.support import KEYS


def test_the_log_is_bounded_one_line_each_and_only_the_running_attempt_writes(app: Flask, publisher: Publisher) -> None:
    store = publisher.store
    job_id = publisher.publish("system.noop", {}, tenant="acme").job_id
    assert not store.lifecycle.log(job_id, 1, "before it runs")  # queued: nobody may write yet
    assert store.lifecycle.start(job_id, max_unfinished=3).outcome == "run"
    assert not store.lifecycle.log(job_id, 2, "a stale attempt")
    for n in range(MAX_LOG_LINES + 5):
        assert store.lifecycle.log(job_id, 1, f"line {n}\nBcc: injected" + "x" * MAX_LOG_LINE)
    kept = store.queries.logs(job_id)
    assert len(kept) == MAX_LOG_LINES and kept[0]["line"].startswith("line 5 Bcc")
    assert all(len(e["line"]) == MAX_LOG_LINE and "\n" not in e["line"] for e in kept)
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/login").get_data(as_text=True))
    assert token is not None
    client.post("/admin/login", data={"key": KEYS["admin"], "csrf_token": token.group(1)})
    html = client.get(f"/admin/jobs/{job_id}").get_data(as_text=True)
    assert '<pre id="log">' in html and "line 204 Bcc: injected" in html
