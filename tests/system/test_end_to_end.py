"""The suite as a newcomer runs it: the real API server and workers, jobs sent over HTTP and the SDK."""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from pathlib import Path

import redis

from tests.helpers import ROOT, VENV_BIN, wait_for
from tests.support import KEYS, REDIS_URL
from tests.system.stack import Api, Worker


def _job(api: Api, job_id: str) -> dict:
    status, _, body = api.request("GET", f"/v1/jobs/{job_id}")
    assert status == 200
    return body


def test_a_sleep_job_sent_with_curl_is_seen_over_sse_queued_running_succeeded(env, logs: Path) -> None:
    api, worker = Api(env, logs), Worker(env, logs)
    try:
        # Given the running suite, when a client POSTs a system.sleep job with curl,
        curl = subprocess.run(
            [
                "curl",
                "-s",
                "-i",
                "-X",
                "POST",
                f"http://127.0.0.1:{api.port}/v1/jobs",
                "-H",
                f"Authorization: Bearer {env['OFFLOAD_API_KEYS'].split('=')[0]}",
                "-H",
                "Content-Type: application/json",
                "-d",
                '{"type":"system.sleep","payload":{"ms":1500,"steps":5}}',
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        head, _, body = curl.stdout.partition("\n\n")
        assert body, curl.stdout
        assert head.startswith("HTTP/1.1 202")
        accepted = json.loads(body)
        # then following its events URL shows every state in order, ending succeeded at 100 %.
        events = list(api.events(accepted["id"]))
        states = [e["data"]["state"] for e in events if e["event"] == "state"]
        assert states == ["queued", "running", "succeeded"]
        assert [int(e["id"]) for e in events] == sorted(int(e["id"]) for e in events)
        assert any(e["event"] == "progress" for e in events)
        final = events[-1]["data"]
        assert final["progress"] == 100 and final["job"]["result"] == {"slept_ms": 1500}
        # A client that reconnects with Last-Event-ID gets the state changes that followed (progress is
        # a latest value, not history: only the current one is replayed), and nothing it had.
        resumed = list(api.events(accepted["id"], last_event_id=int(events[1]["id"])))
        later_states = [e["id"] for e in events[2:] if e["event"] == "state"]
        assert [e["id"] for e in resumed if e["event"] == "state"] == later_states
        assert all(int(e["id"]) > int(events[1]["id"]) for e in resumed)
        # Every EventSource reconnects after the end: it is told to wait a day and closed at once,
        # not held for an hour on an idle connection that counts toward the stream limit.
        status, body, seconds = _raw_events(api, accepted["id"], last_event_id=int(events[-1]["id"]))
        assert status == 200 and seconds < 1, seconds
        assert "\nid:" not in body and "retry: 86400000" in body
    finally:
        api.stop()
        worker.stop()


def _raw_events(api: Api, job_id: str, *, last_event_id: int) -> tuple[int, str, float]:
    """The whole body of one events request, and how long the server kept it open."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {KEYS['acme']}", "Last-Event-ID": str(last_event_id)}
        connection.request("GET", f"/v1/jobs/{job_id}/events", headers=headers)
        response = connection.getresponse()
        body = response.read().decode()
        return response.status, "\n" + body, time.monotonic() - started
    finally:
        connection.close()


def test_a_job_published_with_the_sdk_from_another_process_is_listed_by_the_api(env, logs: Path) -> None:
    api, worker = Api(env, logs), Worker(env, logs)
    try:
        result = subprocess.run(
            [str(VENV_BIN / "offload"), "submit", "system.noop", '{"echo": "from the sdk"}', "--tenant", "acme"],
            env={**env, "PATH": f"{VENV_BIN}:/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stderr
        job_id = json.loads(result.stdout)["id"]
        status, _, page = api.request("GET", "/v1/jobs")
        assert status == 200 and job_id in [j["id"] for j in page["jobs"]]
        wait_for(lambda: _job(api, job_id)["state"] == "succeeded", timeout=10)
        assert _job(api, job_id)["result"] == {"echo": "from the sdk"}
    finally:
        api.stop()
        worker.stop()


def test_a_worker_killed_mid_job_redelivers_it_after_restart_and_it_succeeds_on_attempt_2(env, logs: Path) -> None:
    api, worker = Api(env, logs), Worker(env, logs)
    try:
        _, _, accepted = api.request("POST", "/v1/jobs", {"type": "system.sleep", "payload": {"ms": 2000}})
        job_id = accepted["id"]
        wait_for(lambda: _job(api, job_id)["state"] == "running", timeout=10)
        worker.kill()  # kill -9 the worker and its children mid-job
        assert _job(api, job_id)["state"] == "running"
        worker.start()
        wait_for(lambda: _job(api, job_id)["state"] == "succeeded", timeout=20)
        job = _job(api, job_id)
        assert job["attempts"] == 2
        running = [h for h in job["history"] if h["state"] == "running"]
        assert [h["attempt"] for h in running] == [1, 2] and running[1].get("redelivered") is True
    finally:
        api.stop()
        worker.stop()


def test_a_chunked_body_over_the_limit_is_413_from_the_real_server(env, logs: Path) -> None:
    api = Api({**env, "OFFLOAD_MAX_BODY_BYTES": "4096"}, logs)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
        connection.putrequest("POST", "/v1/jobs")
        connection.putheader("Authorization", f"Bearer {env['OFFLOAD_API_KEYS'].split('=')[0]}")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        chunk = b'{"type":"system.noop","payload":{"echo":"' + b"x" * 8000 + b'"}}'
        connection.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n")
        response = connection.getresponse()
        assert response.status == 413 and json.loads(response.read())["error"] == "payload_too_large"
        connection.close()
        assert redis.Redis.from_url(REDIS_URL).keys("offload:job:*") == []
    finally:
        api.stop()
