"""Every report limit fails the job with a clear code and leaves no file (reliability-security.md F17, F18)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from offload.publish import Publisher
from offload.status import JobRecord
from offload.testing import serving
from tests.http_source import Source
from tests.reports.test_build import COLUMNS, _rows
from tests.s3_server import TEST_BACKEND, stored
from tests.support import Api
from tests.support.reports import report_settings

from offload_reports.worker import SPEC  # isort: skip


@contextmanager
def limited_worker(**overrides: Any) -> Iterator[None]:
    """A reports worker whose limits are ``overrides``."""
    with serving(SPEC, report_settings(**overrides), threads=1, stop_timeout_ms=10_000):
        yield


def _build(api: Api, publisher: Publisher, payload: dict, **options: Any) -> JobRecord:
    response = api.submit("report.build", {"title": "Limits", "columns": COLUMNS, **payload}, **options)
    assert response.status_code == 202, response.get_json()
    record = publisher.wait(response.get_json()["id"], timeout=30)
    assert record is not None
    return record


def _files(storage: Path, job_id: str) -> list[str]:
    folder = storage / "acme" / job_id
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_too_many_rows_and_too_large_a_file_fail_and_leave_nothing(
    api: Api, publisher: Publisher, servers: None
) -> None:
    with limited_worker(report_max_rows=50, report_max_bytes=4096):
        rows = _build(api, publisher, {"rows": _rows(60), "output": "csv"})
        assert rows.state == "failed" and rows.error_code == "too_many_rows" and "50" in (rows.error_message or "")
        wide = [{"name": "x" * 500, "qty": i} for i in range(40)]
        size = _build(api, publisher, {"rows": wide, "output": "csv"})
        assert size.state == "failed" and size.error_code == "report_too_large"
        assert stored(report_settings(), "acme", rows.id) == {} and stored(report_settings(), "acme", size.id) == {}


def test_a_source_over_the_byte_cap_or_a_gzip_bomb_stops_at_the_cap(
    api: Api, publisher: Publisher, servers: None, source: Source
) -> None:
    with limited_worker(report_source_max_bytes=1_000_000):
        source.body = b"\n".join(json.dumps({"name": "y" * 100, "qty": i}).encode() for i in range(20_000))
        plain = _build(api, publisher, {"source": {"url": source.url()}, "output": "csv"})
        assert plain.state == "failed" and plain.error_code == "source_too_large"
        source.body, source.gzip = b"\n".join([b'{"name": "' + b"z" * 1000 + b'"}'] * 50_000), True  # 50 MB inflated
        bomb = _build(api, publisher, {"source": {"url": source.url()}, "output": "csv"})
        assert bomb.state == "failed" and bomb.error_code == "source_too_large"


def test_a_source_that_drips_fails_at_the_deadline(
    api: Api, publisher: Publisher, servers: None, source: Source
) -> None:
    source.body, source.drip_seconds = b'{"name": "slow"}\n' * 20, 0.02  # 7 s in all
    with limited_worker(report_source_timeout=1.0):
        started = time.monotonic()
        record = _build(api, publisher, {"source": {"url": source.url()}, "output": "csv"}, max_retries=0)
        assert record.state == "failed" and record.error_code == "source_timeout"
        assert time.monotonic() - started < 5


def test_a_source_that_closes_mid_body_fails_as_unreachable(
    api: Api, publisher: Publisher, servers: None, source: Source
) -> None:
    source.body, source.truncate = b'{"name": "cut"}\n' * 1000, True
    with limited_worker():
        record = _build(api, publisher, {"source": {"url": source.url()}, "output": "csv"}, max_retries=0)
    assert record.state == "failed" and record.error_code == "source_unreachable", record


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs, so that a write really fails with ENOSPC (needs root: skipped otherwise)."""
    if TEST_BACKEND != "local":
        pytest.skip("a full OFFLOAD_STORAGE_DIR concerns the local backend only")
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)]).returncode:
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_the_report_cleanly_and_a_retry_succeeds_once_there_is_room(
    api: Api, publisher: Publisher, servers: None, small_disk: Path
) -> None:
    ballast = small_disk / "ballast"
    with limited_worker(storage_dir=str(small_disk)):
        ballast.write_bytes(b"\0" * 900_000)
        big = [{"name": "n" * 200, "qty": i} for i in range(2_000)]  # about 420 kB of CSV
        full = _build(api, publisher, {"rows": big, "output": "csv"}, max_retries=0)
        assert full.state == "failed" and full.error_code == "disk_full", full
        assert _files(small_disk, full.id) == []  # no partial file, no .part left over
        ballast.unlink()
        again = _build(api, publisher, {"rows": big, "output": "csv"})
        assert again.state == "succeeded" and again.result["bytes"] > 400_000
