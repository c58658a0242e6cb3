"""The PDF report writer (fpdf2), imported only when a PDF is asked for.

fpdf2 and fontTools take over a second to import, which every reports worker process would
otherwise pay at start. fpdf2 lays a PDF out in memory, which is why PDF reports have a lower row
limit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import BinaryIO

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from offload.contracts.reports import Column
from offload_reports.cells import Cell
from offload_reports.writers import width

logger = logging.getLogger(__name__)


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
