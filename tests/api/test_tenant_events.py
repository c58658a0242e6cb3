"""``GET /v1/events`` in process (issue 22): a tenant's changes, filtered, resumed with Last-Event-ID, per tenant.

Every change comes from the status store's scripts as the worker writes them (a worker runs the jobs
here); the overflow cut of a slow client, which needs a real socket, is in
``tests/system/test_tenant_events.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from offload.publish import Publisher
from offload_api.app import create_app
from tests.support import KEYS, Api, make_settings


@pytest.fixture
def app(publisher: Publisher) -> Flask:
    return create_app(make_settings(sse_keepalive=0.2), publisher=publisher)


def read_events(
    client: FlaskClient, path: str, *, until: Any, who: str = "acme", last_event_id: str | None = None, timeout=15.0
) -> list[dict[str, Any]]:
    """The stream's events (``{"id", "event", "data"}``) until ``until(events)`` holds or the stream ends."""
    headers = {"Authorization": f"Bearer {KEYS[who]}"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    response = client.get(path, headers=headers, buffered=False)
    assert response.status_code == 200, response.get_json()
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        for chunk in _chunks(response.response):
            for block in chunk.split("\n\n"):
                fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":")
                if "event" in fields:
                    events.append({**fields, "data": json.loads(fields["data"])})
            if until(events) or time.monotonic() > deadline:
                break
    finally:
        response.close()
    return events


def _chunks(body: Any) -> Iterator[str]:
    for chunk in body:
        yield chunk.decode() if isinstance(chunk, bytes) else chunk


def _ended(job_ids: set[str]) -> Any:
    def check(events: list[dict[str, Any]]) -> bool:
        done = {e["data"]["job_id"] for e in events if e["data"].get("state") in ("succeeded", "failed", "dead")}
        return job_ids <= done

    return check


def test_the_feed_sends_a_tenants_changes_filtered_and_no_one_elses(api: Api, client: FlaskClient, worker: Any) -> None:
    mine = {api.submit("system.sleep", {"ms": 50, "steps": 2}, tags=["feed"]).get_json()["id"] for _ in range(3)}
    api.submit("system.noop", tags=["elsewhere"])
    api.as_("globex").submit("system.noop", tags=["feed"])
    # Started after the submissions: resumed from the start of the feed, it replays them too.
    events = read_events(client, "/v1/events?tag=feed", until=_ended(mine), last_event_id="0-0")
    assert {e["data"]["job_id"] for e in events} == mine
    assert all(e["data"]["tenant"] == "acme" and e["data"]["tags"] == ["feed"] for e in events)
    states = [(e["data"]["job_id"], e["data"]["state"]) for e in events if e["event"] == "state"]
    per_job = {j: [state for job, state in states if job == j] for j in mine}
    assert all(states == ["queued", "running", "succeeded"] for states in per_job.values()), per_job
    assert any(e["event"] == "progress" and e["data"]["type"] == "system.sleep" for e in events)
    ids = [_order(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)

    ended = read_events(client, "/v1/events?state=succeeded&queue=system", until=_ended(mine), last_event_id="0-0")
    assert {e["data"]["state"] for e in ended} == {"succeeded"} and mine <= {e["data"]["job_id"] for e in ended}
    admin = read_events(
        client,
        "/v1/events?tag=feed&state=succeeded",
        who="admin",
        last_event_id="0-0",
        until=lambda evs: len(evs) >= 4,
        timeout=5,
    )
    assert {e["data"]["tenant"] for e in admin} == {"acme", "globex"}


def test_a_client_resuming_with_last_event_id_misses_nothing_and_repeats_nothing(
    api: Api, client: FlaskClient, worker: Any
) -> None:
    first = {api.submit("system.noop", tags=["resume"]).get_json()["id"] for _ in range(3)}
    seen = read_events(client, "/v1/events?tag=resume", until=_ended(first), last_event_id="0-0")
    cut = seen[len(seen) // 2]["id"]  # the client drops here
    # While it is away, more jobs run; then it reconnects with the last id it had.
    later = {api.submit("system.noop", tags=["resume"]).get_json()["id"] for _ in range(3)}
    resumed = read_events(client, "/v1/events?tag=resume", until=_ended(later), last_event_id=cut)
    everything = read_events(client, "/v1/events?tag=resume", until=_ended(first | later), last_event_id="0-0")
    after_cut = [e["id"] for e in everything if _order(e["id"]) > _order(cut)]
    assert [e["id"] for e in resumed] == after_cut
    assert {e["data"]["job_id"] for e in resumed} >= later


def _order(event_id: str) -> tuple[int, int]:
    ms, _, n = event_id.partition("-")
    return int(ms), int(n)


def test_a_stream_started_now_sends_only_what_follows(api: Api, client: FlaskClient) -> None:
    api.submit("system.noop", tags=["now"])  # before the stream: not sent
    events = read_events(client, "/v1/events?tag=now", until=lambda evs: False, timeout=1.0)
    assert events == []
    api.submit("system.noop", tags=["now"])  # between two streams: not sent either
    response = client.get("/v1/events?tag=now", headers=api.headers(), buffered=False)
    body = _chunks(response.response)
    assert next(body).startswith("retry:")  # the stream is open and waits on the feed
    quiet = time.monotonic()
    assert next(body) == ": keep-alive\n\n" and time.monotonic() - quiet < 5  # a quiet stream's heartbeat
    after = api.submit("system.noop", tags=["now"]).get_json()["id"]
    first_event = next(c for c in body if c.startswith("id:"))
    response.close()
    assert f'"job_id": "{after}"' in first_event and '"state": "queued"' in first_event


@pytest.mark.parametrize(
    ("query", "headers", "field"),
    [
        ("state=nearly", {}, "state"),
        ("tag=no%20space", {}, "tag"),
        ("type=" + "x" * 101, {}, "type"),
        ("", {"Last-Event-ID": "yesterday"}, "Last-Event-ID"),
    ],
)
def test_bad_filters_and_ids_are_422s(api: Api, query: str, headers: dict[str, str], field: str) -> None:
    response = api.get(f"/v1/events?{query}", headers=headers)
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] == field


def test_a_resume_from_before_the_window_is_cut_with_overflow(
    api: Api, client: FlaskClient, publisher: Publisher
) -> None:
    store = publisher.store
    api.submit("system.noop", tags=["old"])
    first = store.feeds.latest(["acme"])["acme"]
    store.client.xtrim(store.keys.feed("acme"), maxlen=0)  # the feed moved on past it (as MAXLEN ~ trims)
    api.submit("system.noop", tags=["old"])
    events = read_events(client, "/v1/events", until=bool, last_event_id=first, timeout=3)
    assert [e["event"] for e in events] == ["overflow"] and events[0]["data"]["error"] == "overflow"
    assert events[0]["id"] == store.feeds.latest(["acme"])["acme"]  # reconnecting resumes from now
