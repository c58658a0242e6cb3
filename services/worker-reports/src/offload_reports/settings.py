"""Settings of the reports worker: the common ``OFFLOAD_*`` ones plus report limits."""

from __future__ import annotations

from pydantic import Field

from offload.settings import Settings


class ReportSettings(Settings):
    """Limits that keep one report from exhausting the worker or the disk (reliability-security.md F17, F18)."""

    #: Most rows a report may have, whatever its source.
    report_max_rows: int = Field(default=1_000_000, ge=1)
    #: Most rows of a PDF report (a PDF is laid out in memory, unlike CSV and XLSX).
    report_pdf_max_rows: int = Field(default=20_000, ge=1)
    #: Largest report file in bytes.
    report_max_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    #: Most bytes read from a URL source (after decompression).
    report_source_max_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    #: Seconds a URL source may take in all (each read also times out after 10 s of silence).
    report_source_timeout: float = Field(default=300.0, gt=0, le=3600)
    #: Least bytes a second a URL source must send, judged over each 10 s spent waiting for it
    #: (``source_too_slow``; a source dripping a byte a second is never silent long enough for
    #: the read timeout). 0: no floor.
    report_source_min_rate: int = Field(default=1024, ge=0)
    #: Niceness of report worker processes: building a report is CPU work that can wait a moment
    #: for an email (``offload.worker.priority``).
    worker_nice: int = Field(default=15, ge=0, le=19)
    #: A TrueType font for PDF reports (UTF-8 text needs one; Debian's fonts-dejavu-core has this).
    report_font: str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    #: Where the daily operations report goes (empty: it is built and stored, not emailed).
    admin_email: str = ""
