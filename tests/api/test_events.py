"""A job's event stream in process: where it ends when a client resumes it with ``Last-Event-ID``."""

from __future__ import annotations

import time

import pytest

from tests.support import Api


def _event_names(body: str) -> list[str]:
    return [line.removeprefix("event: ") for line in body.splitlines() if line.startswith("event: ")]


@pytest.mark.timeout(20)
def test_a_stream_resumed_after_the_jobs_end_closes_at_once(api: Api, worker, wait_state) -> None:
    job_id = api.submit("system.noop").get_json()["id"]
    last = wait_state(job_id, "succeeded").seq
    started = time.monotonic()
    for resumed_at in (last, last + 5):
        response = api.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": str(resumed_at)})
        assert response.status_code == 200 and _event_names(response.get_data(as_text=True)) == []
    assert time.monotonic() - started < 2
    replay = api.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": str(last - 1)})
    assert _event_names(replay.get_data(as_text=True)) == ["state"]  # the terminal one, then it closes


@pytest.mark.timeout(20)
def test_a_stream_resumed_past_a_running_jobs_last_event_closes_when_the_job_ends(api: Api, worker, wait_state) -> None:
    """A Last-Event-ID ahead of the job (a client's bad guess) hides its events, but not its end."""
    job_id = api.submit("system.sleep", {"ms": 300, "steps": 3}).get_json()["id"]
    response = api.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "1000"})
    assert response.status_code == 200 and _event_names(response.get_data(as_text=True)) == []
    assert wait_state(job_id, "succeeded", timeout=1).seq < 1000
