"""``python -m bench.reports_child``: one report written by one system, timed in a process of its own.

``--system ours`` runs the reports worker's own path (``offload_reports.cells`` converters, then
the worker's ``CsvWriter`` / ``XlsxWriter`` / ``PdfWriter`` into a storage writer: temporary file,
fsync, rename). ``--system raw`` is what a developer would write with the library alone for the
same rows: ``csv.writer``, openpyxl's write-only ``append``, fpdf2 ``cell`` calls with a header
per page, into a plain file. Both read the same generated rows (JSON-like values, as a source
gives them: dates as ISO text), so generating them costs both the same. Writes
``{"seconds": ..., "peak_rss_mb": ..., "bytes": ...}`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from bench.media_child import peak_rss_kib

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
COLUMNS: list[dict[str, Any]] = [
    {"name": "id", "type": "integer"},
    {"name": "customer"},
    {"name": "email"},
    {"name": "city"},
    {"name": "status"},
    {"name": "items", "type": "integer"},
    {"name": "quantity", "type": "integer"},
    {"name": "amount", "type": "number"},
    {"name": "tax", "type": "number"},
    {"name": "ordered", "type": "date"},
]
NAMES = [c["name"] for c in COLUMNS]
_CITIES = ("Berlin", "Lisboa", "Zürich", "Kraków", "Oslo", "Sevilla", "Tallinn")
_STATUSES = ("paid", "open", "refunded", "shipped")


def rows(count: int) -> Iterator[dict[str, Any]]:
    """``count`` order rows, made as they are read (nothing held)."""
    for i in range(1, count + 1):
        yield {
            "id": i,
            "customer": f"Customer {i % 5000}",
            "email": f"user{i % 5000}@example.com",
            "city": _CITIES[i % 7],
            "status": _STATUSES[i % 4],
            "items": i % 9 + 1,
            "quantity": i % 40 + 1,
            "amount": (i % 1000) * 1.25,
            "tax": (i % 1000) * 0.2375,
            "ordered": f"2026-{i % 12 + 1:02d}-{i % 28 + 1:02d}",
        }


def ours(fmt: str, count: int, folder: Path) -> int:
    """The worker's own path; returns the bytes written."""
    from offload.contracts.reports import Column
    from offload.storage import LocalStorage
    from offload_reports import cells
    from offload_reports.pdf import PdfWriter
    from offload_reports.writers import CsvWriter, XlsxWriter

    columns = [Column(**c) for c in COLUMNS]
    convert = cells.row_converter(columns, spreadsheet=fmt != "pdf", iso_dates=fmt == "csv")
    storage = LocalStorage(folder)
    with storage.writer(f"bench/run/report.{fmt}") as handle:
        writer: Any
        if fmt == "csv":
            writer = CsvWriter(handle, columns, bom=False)  # type: ignore[arg-type]
        elif fmt == "xlsx":
            writer = XlsxWriter(handle, columns, title="Orders")  # type: ignore[arg-type]
        else:
            writer = PdfWriter(handle, columns, title="Orders", font=FONT)  # type: ignore[arg-type]
        for row in rows(count):
            writer.row(convert(row))
        writer.finish(None)
    return storage.size(f"bench/run/report.{fmt}") or 0


def raw(fmt: str, count: int, folder: Path) -> int:
    """The library alone, the plain way; returns the bytes written."""
    path = folder / f"raw.{fmt}"
    if fmt == "csv":
        with path.open("w", encoding="utf-8", newline="") as handle:
            out = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC)  # the same dialect as ours
            out.writerow(NAMES)
            for row in rows(count):
                out.writerow([row[name] for name in NAMES])
    elif fmt == "xlsx":
        from openpyxl import Workbook

        book = Workbook(write_only=True)
        sheet = book.create_sheet("Orders")
        sheet.append(NAMES)
        for row in rows(count):
            values = [row[name] for name in NAMES]
            values[-1] = date.fromisoformat(values[-1])
            sheet.append(values)
        book.save(path)
    else:
        from fpdf import FPDF

        class Pdf(FPDF):
            def header(self) -> None:
                self.set_font("Body", size=8)
                for name in NAMES:
                    self.cell(27.7, 6, name, border=1)
                self.ln()

        pdf = Pdf(orientation="landscape", format="A4")
        pdf.add_font("Body", fname=FONT)
        pdf.add_page()
        pdf.set_font("Body", size=8)
        for row in rows(count):
            for name in NAMES:
                pdf.cell(27.7, 5, str(row[name]), border=1)
            pdf.ln()
        path.write_bytes(bytes(pdf.output()))
    return path.stat().st_size


def main() -> None:
    """Write one report (after a small warm-up) and record time, peak RSS and size."""
    parser = argparse.ArgumentParser(prog="python -m bench.reports_child")
    parser.add_argument("--system", choices=("ours", "raw"), required=True)
    parser.add_argument("--format", choices=("csv", "xlsx", "pdf"), required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    write = ours if args.system == "ours" else raw
    with tempfile.TemporaryDirectory(prefix="offload-bench-report-") as tmp:
        write(args.format, 50, Path(tmp))  # warm-up: imports, font loading
        started = time.perf_counter()
        size = write(args.format, args.rows, Path(tmp))
        seconds = time.perf_counter() - started
    args.out.write_text(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_kib() / 1024, "bytes": size}))


if __name__ == "__main__":
    main()
