"""Per-job logs (issue 10): a handler's ``ctx.log`` lines come over SSE and at ``/logs``."""

from __future__ import annotations

from pathlib import Path

from tests.system.stack import Api, Worker


def test_a_jobs_log_lines_come_over_sse_and_at_logs(env: dict[str, str], logs: Path) -> None:
    api, worker = Api(env, logs), Worker(env, logs, domain="email")
    try:
        status, _, accepted = api.request(
            "POST", "/v1/jobs", {"type": "system.sleep", "payload": {"ms": 300, "steps": 3}}
        )
        assert status == 202
        events = list(api.events(accepted["id"]))
        lines = [e["data"]["line"] for e in events if e["event"] == "log"]
        assert lines == ["slept 300 ms in 3 steps"]
        assert events[-1]["data"]["state"] == "succeeded"
        seqs = [int(e["id"]) for e in events]
        assert seqs == sorted(seqs)  # the log line sits in the stream in order
        status, _, body = api.request("GET", f"/v1/jobs/{accepted['id']}/logs")
        assert status == 200 and [entry["line"] for entry in body["logs"]] == lines
        assert body["logs"][0]["attempt"] == 1
        # Replayed to a client that connects after the end, too.
        replay = list(api.events(accepted["id"]))
        assert [e["data"]["line"] for e in replay if e["event"] == "log"] == lines
        status, _, other = api.request("GET", f"/v1/jobs/{accepted['id']}/logs", who="globex")
        assert status == 404 and other["error"] == "not_found"
    finally:
        api.stop()
        worker.stop()
