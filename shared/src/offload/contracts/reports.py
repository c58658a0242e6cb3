"""Jobs consumed by services/worker-reports: CSV, XLSX and PDF reports streamed into storage."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field, model_validator

from offload.contracts._base import Concurrency, JobContract, Payload, RetryPolicy
from offload.contracts.email import EmailAddress, HeaderText

REPORTS_QUEUE = "reports"

#: The most rows a report may carry inline; bigger reports name a URL source.
MAX_INLINE_ROWS = 10_000

ColumnType = Literal["string", "integer", "number", "boolean", "date", "datetime"]
Scalar = str | int | float | bool | None


class Column(Payload):
    """One column: the key it is read from, how it is typed, and how it is shown.

    ``format`` is an Excel number format (``#,##0.00``, ``0.0%``, ``yyyy-mm-dd``) used in XLSX
    and approximated in PDF; CSV always carries the plain value, for machines to read.
    """

    name: str = Field(min_length=1, max_length=100, description="The key of the value in each row object.")
    title: HeaderText | None = Field(default=None, max_length=100, description="The header; the name if absent.")
    type: ColumnType = "string"
    format: str | None = Field(default=None, max_length=40, pattern=r'^[0-9#,.%;$€£ _()\-/:yMdhmsAP"]+$')
    width: int | None = Field(default=None, ge=4, le=100, description="Characters; guessed from the type if absent.")

    @property
    def header(self) -> str:
        """The text of this column's header cell."""
        return self.title or self.name


class UrlRows(Payload):
    """Rows fetched from a URL (through the SSRF guard), streamed: never held whole in memory."""

    #: The URL the worker fetches: vetted by the SSRF guard at submission and again when fetched.
    fetched_urls: ClassVar[tuple[str, ...]] = ("url",)

    url: str = Field(max_length=2048)
    format: Literal["ndjson", "csv", "json"] = Field(
        default="ndjson",
        description="One JSON object per line, CSV with a header row, or one JSON array of objects.",
    )


class Notify(Payload):
    """Who gets the ``report_ready`` email once the report is built."""

    email: EmailAddress
    name: HeaderText | None = Field(default=None, max_length=100)


class ReportPayload(Payload):
    """``report.build``: a titled table from inline rows or a URL, as CSV, XLSX or PDF."""

    title: HeaderText = Field(min_length=1, max_length=200)
    columns: list[Column] = Field(min_length=1, max_length=50)
    rows: list[dict[str, Scalar]] | None = Field(default=None, max_length=MAX_INLINE_ROWS)
    source: UrlRows | None = None
    output: Literal["csv", "xlsx", "pdf"] = "xlsx"
    totals: bool = Field(default=False, description="Add a row with the sum of each integer and number column.")
    csv_bom: bool = Field(default=False, description="Start a CSV with a UTF-8 byte-order mark (for Excel).")
    notify: Notify | None = None

    @model_validator(mode="after")
    def _one_source_distinct_columns(self) -> ReportPayload:
        if (self.rows is None) == (self.source is None):
            raise ValueError("give exactly one of rows and source")
        names = [column.name for column in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("column names must be distinct")
        return self


class ReportResult(BaseModel):
    """What ``report.build`` returns."""

    name: str
    format: str
    rows: int
    bytes: int
    url: str = Field(description="A signed, expiring download link (relative to the API).")
    notify_job_id: str | None = Field(default=None, description="The report_ready email's job, when notify was set.")


BUILD = JobContract(
    name="report.build",
    queue=REPORTS_QUEUE,
    payload=ReportPayload,
    result=ReportResult,
    description="Builds a CSV, XLSX or PDF report from inline rows or a streamed URL source, into storage.",
    retry=RetryPolicy(max_retries=3, min_backoff=5, max_backoff=300),
    time_limit=1200,
    # Reports are the heaviest jobs: one tenant's burst must not take every reports worker.
    concurrency=Concurrency(name="report.build:tenant", limit=2, key=lambda tenant, _payload: tenant),
)

CONTRACTS = (BUILD,)
