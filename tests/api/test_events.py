"""A job's event stream in process: where it ends when a client resumes it with ``Last-Event-ID``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from offload.publish import Publisher
from offload.status import JobState
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


@pytest.mark.timeout(20)
def test_a_job_that_starts_while_its_stream_replays_still_shows_running(
    api: Api, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job starts and reports progress between the replay's two reads (its record and its history).

    Seen under load in the end-to-end test: the stream sent queued, then succeeded, and never running.
    """
    job_id = api.submit("system.sleep", {"ms": 100}).get_json()["id"]
    lifecycle, queries = publisher.store.lifecycle, publisher.store.queries
    armed: list[bool] = []  # by the stream's subscription; the replay's reads follow it

    def subscribe(job_id: str, subscribe: Callable[[str], Any] = queries.subscribe) -> Any:
        armed.append(True)
        return subscribe(job_id)

    def after_first_read(read: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            found = read(*args, **kwargs)
            if armed == [True]:
                armed.append(False)
                attempt = lifecycle.start(job_id, max_unfinished=3).attempt
                lifecycle.progress(job_id, attempt, 40)
                threading.Timer(0.3, lifecycle.finish, (job_id, attempt, JobState.SUCCEEDED)).start()
            return found

        return wrapped

    monkeypatch.setattr(queries, "subscribe", subscribe)
    monkeypatch.setattr(queries, "get", after_first_read(queries.get))
    monkeypatch.setattr(queries, "history", after_first_read(queries.history))
    body = api.get(f"/v1/jobs/{job_id}/events").get_data(as_text=True)
    states = [json.loads(line[6:])["state"] for line in body.splitlines() if line.startswith("data: ")]
    assert [s for s, name in zip(states, _event_names(body), strict=True) if name == "state"] == [
        "queued",
        "running",
        "succeeded",
    ]
    assert "progress" in _event_names(body)
