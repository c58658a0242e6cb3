"""Report writers: CSV (the csv module) and XLSX (openpyxl write-only), one row at a time; PDF in ``pdf.py``.

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
from typing import Any, BinaryIO, Protocol, cast

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
