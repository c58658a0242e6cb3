"""F17: the report disk fills up under load: reports fail ``disk_full`` (retrying) at once, leave no
partial file, never get a link to a broken file, and succeed once space is freed
(reliability-security.md §6.1).

A tmpfs is mounted as the storage directory of the real API and a real reports worker process
(needs root; the test is skipped otherwise), nearly filled with a ballast file, and 20 reports of
about 1 MB each (200 at ``OFFLOAD_CHAOS_SCALE`` ≥ 10) are built from a local HTTP source. The
tmpfs is sized to hold every report once the ballast goes (§6.1's 5 MB could never hold 20 MB of
reports, so "retries succeed after the space is freed" needs room for all of them); the ballast
leaves 3 MB, so that a few reports succeed and the rest hit ``ENOSPC`` mid-write.

Promised, and checked:

- every report ends ``succeeded`` (retried after the ballast is removed, 1 s after the first
  ``disk_full``), or ``failed: disk_full`` if its retries ran out first (none expected);
- an attempt that hit the full disk is ``retrying: disk_full`` within 2 s of its start;
- 0 temporary (``.part``) files left over; every file in storage belongs to a succeeded report;
- every succeeded report's link serves exactly the bytes its result names, which parse (CSV reader;
  openpyxl for the XLSX ones) with every row;
- the API and the worker are healthy afterwards (a new report succeeds).

Backoffs are scaled (``OFFLOAD_RETRY_BACKOFF_SCALE=0.2``: 3 retries within 1.5–3 s).
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.chaos.harness import SCALE, Submitter, assert_common, drain
from tests.chaos.ledger import Ledger, finished, job_history, report, seconds_until_progress
from tests.helpers import wait_for
from tests.http_source import Source
from tests.support import KEYS, REDIS_URL
from tests.system.stack import Api, Worker

REPORTS = 20 * SCALE
ROWS = 9_000  # about 1 MB of CSV
XLSX_EVERY = 10
COLUMNS = [{"name": "name"}, {"name": "qty", "type": "integer"}]


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs big enough for every report (needs root)."""
    mount = tmp_path / "storage"
    mount.mkdir()
    size_mb = int(REPORTS * 1.3) + 4
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)]).returncode
    ):
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _download(api: Api, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {KEYS['acme']}"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _rows_in(data: bytes, output: str) -> int:
    """Data rows in a report file (the header not counted); raises if it does not parse."""
    if output == "csv":
        return sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8-sig")))) - 1
    from openpyxl import load_workbook

    sheet = load_workbook(io.BytesIO(data), read_only=True).active
    assert sheet is not None
    return sum(1 for _ in sheet.iter_rows()) - 1


def _report(source: Source, output: str) -> dict[str, Any]:
    return {
        "type": "report.build",
        "payload": {"title": "Disk", "columns": COLUMNS, "source": {"url": source.url()}, "output": output},
    }


def test_f17_a_full_report_disk_fails_cleanly_and_retries_succeed_once_space_is_freed(
    env: dict[str, str], logs: Path, disk: Path, source: Source
) -> None:
    source.body = b"\n".join(json.dumps({"name": "n" * 100, "qty": i}).encode() for i in range(ROWS))
    env = {**env, "OFFLOAD_STORAGE_DIR": str(disk)}
    ballast = disk / "ballast"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    ballast.write_bytes(b"\0" * (free - 3 * 1024 * 1024))
    api = Api(env, logs)
    worker = Worker({**env, "OFFLOAD_RETRY_BACKOFF_SCALE": "0.2"}, logs, domain="reports", threads=4)
    client = redis.Redis.from_url(REDIS_URL)
    ledger = Ledger()
    submitter = Submitter(api, ledger)
    outputs: dict[str, str] = {}
    try:
        for n in range(REPORTS):
            output = "xlsx" if n % XLSX_EVERY == XLSX_EVERY - 1 else "csv"
            submitter.submit(_report(source, output))
            outputs[ledger.entries[-1].job_id or ""] = output

        def disk_full() -> list[str]:
            return [j for j in ledger.accepted if client.hget(f"offload:job:{j}", "error_code") == b"disk_full"]

        wait_for(lambda: bool(disk_full()), timeout=60 * SCALE, interval=0.05)
        time.sleep(1.0)
        ballast.unlink()  # space is freed
        recovery = seconds_until_progress(lambda: finished(ledger, client), total=REPORTS, timeout=30)
        verdict = drain(ledger, client, timeout=120 * SCALE)
        records = {j: {k.decode(): v.decode() for k, v in client.hgetall(f"offload:job:{j}").items()} for j in outputs}
        histories = {j: job_history(client, j) for j in outputs}
        full_attempts = 0
        slowest_report = 0.0
        for events in histories.values():
            started = None
            for event in events:
                if event.get("state") == "running":
                    started = event["at"]
                elif (
                    event.get("state") in ("retrying", "failed")
                    and (event.get("error") or {}).get("code") == "disk_full"
                ):
                    full_attempts += 1
                    slowest_report = max(slowest_report, (event["at"] - (started or event["at"])) / 1000)
        parts = [p for p in disk.rglob("*.part")]
        served_bad = []
        doubles = 0
        for job_id, record in records.items():
            if record["state"] != "succeeded":
                continue
            result = json.loads(record["result"])
            status, data = _download(api, result["url"])
            try:
                rows = _rows_in(data, outputs[job_id])
            except Exception:  # any parse failure is a broken report
                rows = -1
            if status != 200 or len(data) != result["bytes"] or rows != ROWS:
                served_bad.append((job_id, status, len(data), result["bytes"], rows))
            files = list((disk / "acme" / job_id).iterdir())
            doubles += max(0, len(files) - 1)  # one report, one file
        stray = [p for p in disk.glob("acme/*") if records.get(p.name, {}).get("state") != "succeeded"]
        stray = [p for p in stray if any(p.iterdir())]
        # Healthy afterwards: one more report, through the same API and worker.
        again = Ledger()
        Submitter(api, again).submit(_report(source, "csv"))
        healthy = drain(again, client, timeout=30)
        report(
            "F17",
            verdict,
            double_effects=doubles,
            recovery_s=recovery,
            faults=full_attempts,
            ends=verdict.terminal,
            disk_full_within_s=round(slowest_report, 2),
            part_files_left=len(parts),
            bad_served=len(served_bad),
        )
        assert_common(verdict)
        assert full_attempts >= 1, "the disk never filled: the scenario did not happen"
        assert set(verdict.terminal) <= {"succeeded", "failed"}, verdict.terminal
        assert all(r["state"] == "succeeded" or r.get("error_code") == "disk_full" for r in records.values())
        assert verdict.terminal.get("succeeded", 0) >= REPORTS - 1, (
            verdict.terminal
        )  # retries succeed after the space is freed
        assert slowest_report <= 2.0, slowest_report
        assert parts == [] and stray == [], (parts[:3], stray[:3])
        assert served_bad == [], served_bad[:3]
        assert doubles == 0
        assert healthy.terminal == {"succeeded": 1} and worker.process is not None and worker.process.poll() is None
    finally:
        api.stop()
        worker.stop()
