"""Report writers: CSV (the csv module), XLSX (openpyxl write-only) and PDF (fpdf2), one row at a time.

CSV and XLSX stream to the output file as rows arrive, so memory stays flat however many rows
there are; fpdf2 lays a PDF out in memory, which is why PDF reports have a lower row limit.
Every writer gets typed cells (``cells``) and writes a header row first and an optional totals
row last.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from offload.contracts.reports import Column
from offload_reports.cells import Cell

logger = logging.getLogger(__name__)

#: Column widths (characters) by type, when the request gives none.
DEFAULT_WIDTHS = {"string": 24, "integer": 12, "number": 14, "boolean": 8, "date": 12, "datetime": 20}
TOTAL_LABEL = "Total"


class ReportWriter(Protocol):
    """Writes one report to a binary file."""

    def row(self, values: list[Cell]) -> object:
        """Write one data row (typed cells, in column order); the return value means nothing."""
        ...

    def finish(self, totals: list[Cell] | None) -> None:
        """Write the totals row (if any) and everything a reader needs to open the file."""
        ...


def width(column: Column) -> int:
    """The column's width in characters: asked for, or from its type and header."""
    return column.width or max(DEFAULT_WIDTHS[column.type], min(len(column.header) + 2, 40))


class CsvWriter:
    """UTF-8 CSV (optionally with a byte-order mark, which Excel needs to read UTF-8).

    Text fields are always quoted and numbers never are (``QUOTE_NONNUMERIC``), so a reader can
    tell them apart and a neutralised ``'=…`` field stays one field.
    """

    def __init__(self, handle: BinaryIO, columns: Sequence[Column], *, bom: bool) -> None:
        self.text = io.TextIOWrapper(handle, encoding="utf-8-sig" if bom else "utf-8", newline="", write_through=False)
        self.csv = csv.writer(self.text, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
        self.csv.writerow([column.header for column in columns])
        self.booleans = [index for index, column in enumerate(columns) if column.type == "boolean"]
        #: Write one row (None as an empty field; dates as ISO 8601, which is what ``str`` gives).
        #: Without boolean columns the csv module's own ``writerow`` does it all, with no Python frame.
        self.row: Callable[[list[Cell]], object] = self._with_booleans if self.booleans else self.csv.writerow

    def _with_booleans(self, values: list[Cell]) -> None:
        for index in self.booleans:
            value = values[index]
            if value is not None:
                values[index] = "true" if value else "false"
        self.csv.writerow(values)

    def finish(self, totals: list[Cell] | None) -> None:
        """Write the totals row and flush (the file stays open for the storage writer)."""
        if totals is not None:
            self.row(totals)
        self.text.flush()
        self.text.detach()


class XlsxWriter:
    """An XLSX workbook in openpyxl's write-only mode (rows go to disk as they come).

    One sheet named after the title, a bold header on a grey fill that stays in view when
    scrolling, column widths, number formats, and cells typed by the column.
    """

    def __init__(self, handle: BinaryIO, columns: Sequence[Column], *, title: str) -> None:
        self.handle = handle
        self.workbook = Workbook(write_only=True)
        self.sheet = self.workbook.create_sheet(_sheet_title(title))
        for index, column in enumerate(columns, start=1):
            self.sheet.column_dimensions[get_column_letter(index)].width = width(column)
        self.sheet.freeze_panes = "A2"
        bold, fill = Font(bold=True), PatternFill("solid", fgColor="DDDDDD")
        header = []
        for column in columns:
            cell = WriteOnlyCell(self.sheet, value=column.header)
            cell.font, cell.fill, cell.alignment = bold, fill, Alignment(horizontal="center")
            header.append(cell)
        self.sheet.append(header)
        # Only columns with a format of their own need styled cells: openpyxl gives plain date and
        # date-time values its date formats (yyyy-mm-dd, yyyy-mm-dd h:mm:ss) by itself.
        self.formats = [(index, column.format) for index, column in enumerate(columns) if column.format]

    def row(self, values: list[Cell]) -> None:
        """Append one row; cells with a number format become styled cells."""
        row: list[Any] = values
        for index, fmt in self.formats:
            value = row[index]
            if value is not None:
                cell = WriteOnlyCell(self.sheet, value=value)
                cell.number_format = fmt
                row[index] = cell
        self.sheet.append(row)

    def finish(self, totals: list[Cell] | None) -> None:
        """Append the totals row in bold and write the workbook."""
        if totals is not None:
            bold = Font(bold=True)
            row: list[Any] = []
            for value in totals:
                cell = WriteOnlyCell(self.sheet, value=cast(Any, value))
                cell.font = bold
                row.append(cell)
            self.sheet.append(row)
        self.workbook.save(self.handle)


def _sheet_title(title: str) -> str:
    """A valid sheet name: at most 31 characters, none of the characters Excel forbids."""
    return re.sub(r"[\[\]:*?/\\]", " ", title).strip()[:31] or "Report"


class _Pdf(FPDF):
    """A page with the report title and the column headers on top and the page number below."""

    def __init__(self, title: str, columns: Sequence[Column], widths: list[float], font: str) -> None:
        super().__init__(orientation="landscape" if len(columns) > 5 else "portrait", unit="mm", format="A4")
        self.report_title = title
        self.columns = columns
        self.widths = widths
        self.font_name = font

    def header(self) -> None:
        self.set_font(self.font_name, size=12)
        self.cell(0, 8, self.report_title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(self.font_name, size=8)
        self.set_fill_color(221, 221, 221)
        for column, cell_width in zip(self.columns, self.widths, strict=True):
            self.cell(cell_width, 6, _fit(self, column.header, cell_width), border=1, fill=True, align="C")
        self.ln()

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.font_name, size=8)
        self.cell(0, 8, f"Page {self.page_no()} of {{nb}}", align="C")


class PdfWriter:
    """A PDF table: the header row repeated on every page, page numbers, numbers aligned right.

    Text is drawn as text with an embedded TrueType font; nothing in a cell is ever interpreted
    (no HTML, no links), so a report can make no network fetch (§7.6 row 36).
    """

    def __init__(self, handle: BinaryIO, columns: Sequence[Column], *, title: str, font: str) -> None:
        self.handle = handle
        self.columns = columns
        font_name = "Helvetica"
        if Path(font).is_file():
            font_name = "ReportFont"
        else:
            logger.warning("Font %s not found; PDF text falls back to Latin-1.", font)
        weights = [width(column) for column in columns]
        probe = FPDF(orientation="landscape" if len(columns) > 5 else "portrait", format="A4")
        usable = probe.epw
        widths = [usable * w / sum(weights) for w in weights]
        self.pdf = _Pdf(title, columns, widths, font_name)
        if font_name == "ReportFont":
            self.pdf.add_font(font_name, fname=font)
        self.pdf.set_auto_page_break(auto=True, margin=14)
        self.pdf.add_page()
        self.pdf.set_font(font_name, size=8)
        self.latin1 = font_name == "Helvetica"
        self.aligns = ["R" if column.type in ("integer", "number") else "L" for column in columns]
        self.formats = [column.format for column in columns]

    def row(self, values: list[Cell]) -> None:
        """Draw one row (a new page, with the header, when this one is full)."""
        pdf = self.pdf
        for value, cell_width, align, fmt in zip(values, pdf.widths, self.aligns, self.formats, strict=True):
            text = _display(value, fmt)
            if self.latin1:
                text = text.encode("latin-1", "replace").decode("latin-1")
            pdf.cell(cell_width, 5, _fit(pdf, text, cell_width), border=1, align=align)
        pdf.ln()

    def finish(self, totals: list[Cell] | None) -> None:
        """Draw the totals row and write the document."""
        if totals is not None:
            self.row(totals)
        self.handle.write(bytes(self.pdf.output()))


def _fit(pdf: FPDF, text: str, cell_width: float) -> str:
    """``text`` cut with an ellipsis to fit ``cell_width`` (cells do not wrap)."""
    room = cell_width - 2 * pdf.c_margin
    if pdf.get_string_width(text) <= room:
        return text
    while text and pdf.get_string_width(text + "…") > room:
        text = text[: max(0, len(text) - max(1, len(text) // 8))]
    return text + "…"


def _display(value: Cell, fmt: str | None) -> str:
    """A cell as text for the PDF, following the spirit of its Excel format."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float) and fmt:
        decimals = len(fmt.split(".")[1].rstrip("%").replace("#", "0")) if "." in fmt else 0
        if fmt.endswith("%"):
            return f"{value * 100:,.{decimals}f}%" if "," in fmt else f"{value * 100:.{decimals}f}%"
        return f"{value:,.{decimals}f}" if "," in fmt else f"{value:.{decimals}f}"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
