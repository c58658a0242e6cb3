"""F18: report data sources that never answer, drip, send gigabytes, send a gzip bomb or send
malformed data fail their report with a clear reason, quickly, within the memory caps, while good
reports beside them succeed (reliability-security.md §6.1).

Reports go through the real API to a real reports worker process (8 threads) from a loopback
source (tests/chaos/sinks.py ``HostileSource``) whose bodies are generated as read:

(a) ``/silent`` accepts and never sends headers; (b) ``/drip`` sends 1 byte a second;
(c) ``/huge`` sends 5 GB of rows; (d) ``/bomb`` sends gzip that inflates to 5 GB;
(e) ``/bad.json`` and ``/bad.csv`` send malformed JSON and CSV; beside them, good reports.

Promised, and checked:

- (a)/(b) each attempt fails within 15 s: (a) ``source_unreachable`` after the 10 s read timeout,
  (b) ``source_too_slow`` after 10 s of waiting for it brought fewer than
  ``OFFLOAD_REPORT_SOURCE_MIN_RATE`` (1 KB/s) bytes a second, with the product's own settings;
- (c)/(d) fail at the cap (``source_too_large``, or ``too_many_rows`` if the row cap comes first),
  with the worker's resident memory growing by less than 100 MB;
- (e) ``failed: bad_source_data``, the API showing a one-line reason that names the row, no traceback;
- every good report succeeds; the worker then builds a new report at once (recovery s).

Scaled down: the default run caps sources at 20 MB (the product's 100 MB at
``OFFLOAD_CHAOS_SCALE`` ≥ 10). Hostile reports ask for ``max_retries: 0`` so that one attempt is
timed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis

from tests.chaos.harness import SCALE, Submitter, assert_common, drain
from tests.chaos.ledger import Ledger, finished, job_history, report, seconds_until_progress
from tests.chaos.sinks import HostileSource, PeakRss, children, memory_kb
from tests.support import REDIS_URL
from tests.system.stack import Api, Worker

GOOD = 20 * SCALE
CAP = 100 * 1024**2 if SCALE >= 10 else 20 * 1024**2
COLUMNS = [{"name": "name"}, {"name": "qty", "type": "integer"}]
CASES = {
    "a": ("/silent", "ndjson"),
    "b": ("/drip", "ndjson"),
    "c": ("/huge", "ndjson"),
    "d": ("/bomb", "ndjson"),
    "e-json": ("/bad.json", "json"),
    "e-csv": ("/bad.csv", "csv"),
}


def _report(url: str, fmt: str, *, hostile: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "report.build",
        "payload": {"title": "Source", "columns": COLUMNS, "source": {"url": url, "format": fmt}, "output": "csv"},
    }
    if hostile:
        body["options"] = {"max_retries": 0}
    return body


def _attempt_seconds(client: redis.Redis, job_id: str) -> float:
    """Seconds from the job's (only) attempt starting to it ending."""
    events = job_history(client, job_id)
    start = next(e["at"] for e in events if e.get("state") == "running")
    end = next(e["at"] for e in events if e.get("state") in ("failed", "succeeded", "dead"))
    return float(end - start) / 1000


def test_f18_slow_huge_or_malformed_report_sources_fail_fast_and_small_with_a_reason(
    env: dict[str, str], logs: Path, tmp_path: Path
) -> None:
    env = {**env, "OFFLOAD_STORAGE_DIR": str(tmp_path / "storage")}
    worker_env = {**env, "OFFLOAD_REPORT_SOURCE_MAX_BYTES": str(CAP)}
    client = redis.Redis.from_url(REDIS_URL)
    ledger = Ledger()
    with HostileSource().running() as source:
        api = Api(env, logs)
        worker = Worker(worker_env, logs, domain="reports", threads=8)
        submitter = Submitter(api, ledger)
        try:
            assert worker.process is not None
            pid = worker.process.pid
            good = _submit(submitter, _report(source.url("/good"), "ndjson", hostile=False))  # warm up
            drain(ledger, client, timeout=30)
            before_kb = sum(memory_kb(child) for child in children(pid))
            jobs: dict[str, list[str]] = {}
            with PeakRss(lambda: children(pid)) as peak:
                for name, (path, fmt) in CASES.items():
                    jobs[name] = [
                        _submit(submitter, _report(source.url(path), fmt, hostile=True)) for _ in range(SCALE)
                    ]
                jobs["good"] = [good] + [
                    _submit(submitter, _report(source.url("/good"), "ndjson", hostile=False)) for _ in range(GOOD)
                ]
                verdict = drain(ledger, client, timeout=90 * SCALE)
            growth_mb = (peak.peak - before_kb) / 1024
            records = {
                name: [{k.decode(): v.decode() for k, v in client.hgetall(f"offload:job:{j}").items()} for j in ids]
                for name, ids in jobs.items()
            }
            seconds = {name: max(_attempt_seconds(client, j) for j in jobs[name]) for name in ("a", "b")}
            shown = [api.request("GET", f"/v1/jobs/{j}")[2] for j in jobs["e-json"] + jobs["e-csv"]]
            # Recovery: a new good report right after.
            fresh = Ledger()
            Submitter(api, fresh).submit(_report(source.url("/good"), "ndjson", hostile=False))
            recovery = seconds_until_progress(lambda: finished(fresh, client), total=1, timeout=30)
            ends = {
                name: sorted({f"{r['state']}:{r.get('error_code', '')}" for r in rs}) for name, rs in records.items()
            }
            report(
                "F18",
                verdict,
                double_effects=0,  # a report's file is written once by an atomic rename (F17 counts files)
                recovery_s=recovery,
                faults=len(CASES) * SCALE,
                ends=ends,
                slow_fail_s={k: round(v, 1) for k, v in seconds.items()},
                rss_growth_mb=round(growth_mb, 1),
                cap_mb=CAP >> 20,
            )
            assert_common(verdict)
            assert ends["good"] == ["succeeded:"], ends["good"]
            assert ends["a"] == ["failed:source_unreachable"] and seconds["a"] <= 15, (ends["a"], seconds)
            assert ends["b"] == ["failed:source_too_slow"] and seconds["b"] <= 15, (ends["b"], seconds)
            for name in ("c", "d"):
                assert set(ends[name]) <= {"failed:source_too_large", "failed:too_many_rows"}, ends[name]
            assert growth_mb < 100, f"the worker grew {growth_mb:.0f} MB"
            for name in ("e-json", "e-csv"):
                assert ends[name] == ["failed:bad_source_data"], ends[name]
            for job in shown:
                message = job["error"]["message"]
                assert "Row" in message and "Traceback" not in json.dumps(job) and "\n" not in message, job
            assert recovery <= 30
        finally:
            api.stop()
            worker.stop()


def _submit(submitter: Submitter, body: dict[str, Any]) -> str:
    answer = submitter.submit(body)
    job_id = submitter.ledger.entries[-1].job_id
    assert answer.status == 202 and job_id, answer
    return job_id
