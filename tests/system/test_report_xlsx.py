"""Issue 6, must-show 1: a 100k-row XLSX report from a local NDJSON URL, followed over SSE, downloaded, re-read."""

from __future__ import annotations

import http.client
import io
import json
from pathlib import Path

from openpyxl import load_workbook

from tests.http_source import Source
from tests.system.stack import Api, Worker

ROWS = 100_000
INJECTION = "=cmd|' /C calc'!A0"


def _ndjson() -> bytes:
    lines = []
    for i in range(1, ROWS + 1):
        name = INJECTION if i % 10_000 == 0 else f"customer {i}"
        lines.append(json.dumps({"name": name, "orders": i % 97, "amount": i / 4, "day": f"2026-03-{i % 28 + 1:02d}"}))
    return "\n".join(lines).encode()


def _get(api: Api, path: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        assert response.status == 200, body[:200]
        return body
    finally:
        connection.close()


def test_a_100k_row_xlsx_from_a_url_shows_rising_progress_and_downloads_typed(
    env, logs: Path, tmp_path: Path, source: Source
) -> None:
    source.body = _ndjson()
    env = {**env, "OFFLOAD_STORAGE_DIR": str(tmp_path / "storage")}
    api, worker = Api(env, logs), Worker(env, logs, domain="reports", threads=1)
    try:
        payload = {
            "title": "Customers",
            "columns": [
                {"name": "name"},
                {"name": "orders", "type": "integer"},
                {"name": "amount", "type": "number", "format": "#,##0.00"},
                {"name": "day", "type": "date"},
            ],
            "source": {"url": source.url("/customers.ndjson"), "format": "ndjson"},
            "output": "xlsx",
        }
        status, _, accepted = api.request("POST", "/v1/jobs", {"type": "report.build", "payload": payload})
        assert status == 202, accepted
        events = list(api.events(accepted["id"], timeout=120))
        final = events[-1]["data"]
        assert final["state"] == "succeeded", final
        percents = [e["data"]["progress"] for e in events if e["event"] == "progress"]
        assert len({p for p in percents if 0 < p < 100}) >= 3, percents  # seen rising while it ran
        assert percents == sorted(percents)
        result = final["job"]["result"]
        assert result["rows"] == ROWS and result["name"] == "customers.xlsx"
        book = load_workbook(io.BytesIO(_get(api, result["url"])), read_only=True)
        rows = list(book["Customers"].iter_rows(values_only=True))
        assert len(rows) == ROWS + 1 and rows[0] == ("name", "orders", "amount", "day")
        assert rows[1][1:3] == (1, 0.25) and rows[ROWS][1:3] == (ROWS % 97, ROWS / 4)
        injected = [row[0] for row in rows[1:] if isinstance(row[0], str) and "cmd|" in row[0]]
        assert injected == ["'" + INJECTION] * 10  # neutralised: text, not a formula
        assert source.paths == ["/customers.ndjson"]
    finally:
        api.stop()
        worker.stop()
