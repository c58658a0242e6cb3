"""A URL source is held to a least transfer rate while the worker waits for it, not while it
writes rows: a real loopback HTTP source, read by the reports worker's fetcher."""

from __future__ import annotations

import json
import time

import pytest

from offload.contracts.reports import UrlRows
from offload.errors import TransientJobError
from offload.urls import UrlPolicy
from offload_reports.sources import UrlFetcher
from tests.http_source import Source

POLICY = UrlPolicy(allow_http=True, allowed_ports=range(1, 65536), allow_hosts=("127.0.0.1",))


def _fetcher(min_rate: float) -> UrlFetcher:
    return UrlFetcher(POLICY, max_bytes=10**8, deadline=60, min_rate=min_rate, rate_window=0.5)


def _rows(count: int) -> bytes:
    return b"".join(json.dumps({"name": f"n{i}", "qty": i}).encode() + b"\n" for i in range(count))


def test_a_dripping_source_fails_source_too_slow_after_one_window(source: Source) -> None:
    source.body, source.drip_seconds = _rows(50), 0.01  # ~100 bytes a second, ~13 s in all
    response, rows = _fetcher(min_rate=1024).open(UrlRows(url=source.url(), format="ndjson"))
    started = time.monotonic()
    with response, pytest.raises(TransientJobError) as failed:
        list(rows.rows)
    assert failed.value.code == "source_too_slow" and "bytes a second" in str(failed.value)
    assert time.monotonic() - started < 3


def test_the_time_spent_writing_rows_does_not_count_against_the_source(source: Source) -> None:
    source.body = _rows(2_000)
    response, rows = _fetcher(min_rate=10_000).open(UrlRows(url=source.url(), format="ndjson"))
    read = []
    with response:
        for row in rows.rows:
            read.append(row)
            if len(read) % 200 == 0:
                time.sleep(0.1)  # a slow writer: 1 s in all, two windows' worth
    assert len(read) == 2_000


def test_no_floor_when_the_rate_is_zero(source: Source) -> None:
    source.body, source.drip_seconds = _rows(3), 0.01
    response, rows = _fetcher(min_rate=0).open(UrlRows(url=source.url(), format="ndjson"))
    with response:
        assert [row["qty"] for row in rows.rows] == [0, 1, 2]
