"""The reports worker's job handler: rows in (``sources``), typed cells (``cells``), a file out (``writers``)."""

from __future__ import annotations

import dataclasses
import errno
import logging
import re
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, BinaryIO, cast

from offload.contracts.reports import BUILD, Column, ReportPayload, ReportResult
from offload.errors import FileTooLarge, PermanentJobError, TransientJobError
from offload.jobs import served_by
from offload.publish import Publisher
from offload.signing import LinkSigner
from offload.storage import Storage, make_key
from offload.worker import JobContext
from offload_reports import cells, sources
from offload_reports.settings import ReportSettings
from offload_reports.writers import CsvWriter, ReportWriter, XlsxWriter

logger = logging.getLogger(__name__)

#: Rows between two progress reports (``JobContext.progress`` also waits 100 ms between writes).
PROGRESS_EVERY = 2000


@dataclass(frozen=True)
class ReportHandlers:
    """Entry points for the ``reports`` queue."""

    storage: Storage
    signer: LinkSigner
    settings: ReportSettings
    fetcher: sources.UrlFetcher
    #: Publishes the ``report_ready`` email of ``notify``.
    publisher: Publisher

    def build(self, ctx: JobContext, payload: ReportPayload) -> ReportResult:
        """Stream the rows into a CSV, XLSX or PDF file in storage; then send the ``notify`` email.

        The file is written to a temporary name and renamed into place only when complete, so a
        failed or retried build never leaves (or links to) a partial report.

        Raises:
            PermanentJobError: ``bad_source_data``, ``too_many_rows``, ``report_too_large``, or a
                source that is refused or too large.
            TransientJobError: ``disk_full``, or a source that cannot be read now.
        """
        if self.storage.discard_partials(ctx.tenant, ctx.job_id):
            logger.info("Discarded the half-written report of an interrupted attempt.")
        name = f"{_slug(payload.title)}.{payload.output}"
        key = make_key(ctx.tenant, ctx.job_id, name)
        try:
            with ExitStack() as stack:
                if payload.rows is not None:
                    rows = sources.inline(payload.rows)
                else:
                    assert payload.source is not None
                    response, rows = self.fetcher.open(payload.source)
                    stack.callback(response.close)
                handle = stack.enter_context(self.storage.writer(key, max_bytes=self.settings.report_max_bytes))
                count = self._write(ctx, payload, rows, self._writer(payload, cast(BinaryIO, handle)))
        except FileTooLarge:
            raise PermanentJobError(
                f"The report would be larger than {self.settings.report_max_bytes:,} bytes.", code="report_too_large"
            ) from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise TransientJobError("The disk for reports is full.", code="disk_full") from None
            raise
        size = self.storage.size(key) or 0
        result = ReportResult(name=name, format=payload.output, rows=count, bytes=size, url=self.signer.path(key))
        if payload.notify is not None:
            result.notify_job_id = self._notify(ctx, payload, result.url)
        return result

    def _writer(self, payload: ReportPayload, handle: BinaryIO) -> ReportWriter:
        if payload.output == "csv":
            return CsvWriter(handle, payload.columns, bom=payload.csv_bom)
        if payload.output == "xlsx":
            return XlsxWriter(handle, payload.columns, title=payload.title)
        from offload_reports.pdf import PdfWriter  # fpdf2 is slow to import: only when a PDF is asked for

        return PdfWriter(handle, payload.columns, title=payload.title, font=self.settings.report_font)

    def _write(self, ctx: JobContext, payload: ReportPayload, rows: sources.Rows, writer: ReportWriter) -> int:
        columns = payload.columns
        convert = cells.row_converter(columns, spreadsheet=payload.output != "pdf", iso_dates=payload.output == "csv")
        summed = (
            [i for i, column in enumerate(columns) if column.type in ("integer", "number")] if payload.totals else []
        )
        sums: list[float] = [0] * len(columns)
        limit = self.settings.report_pdf_max_rows if payload.output == "pdf" else self.settings.report_max_rows
        count = 0
        for row in rows.rows:
            count += 1
            if count > limit:
                raise PermanentJobError(
                    f"The report has more than {limit:,} rows, the limit for {payload.output.upper()}.",
                    code="too_many_rows",
                )
            try:
                values = convert(row)
            except (ValueError, TypeError, AttributeError):
                raise _bad_cell(count, row, columns) from None
            for index in summed:
                value = values[index]
                if value is not None:
                    sums[index] += value  # type: ignore[operator]
            writer.row(values)
            if count % PROGRESS_EVERY == 0:
                percent = rows.percent(count)
                read = f", {rows.read_bytes / 1e6:.1f} MB read" if rows.read_bytes else ""
                ctx.progress(percent or 0, f"{count:,} rows{read}")
        totals: list[cells.Cell] | None = None
        if payload.totals:
            totals = [sums[i] if i in summed else None for i in range(len(columns))]
            if columns[0].type == "string":
                totals[0] = "Total"
        writer.finish(totals)
        read = f" from {rows.read_bytes / 1e6:.1f} MB of source" if rows.read_bytes else ""
        ctx.log(f"wrote {count:,} rows to {payload.output.upper()}{read}")
        ctx.progress(100, f"{count:,} rows")
        return count

    def _notify(self, ctx: JobContext, payload: ReportPayload, path: str) -> str:
        """Queue the ``report_ready`` email; its id comes from the report's, so a rerun queues it once."""
        assert payload.notify is not None
        base = self.settings.public_url.rstrip("/") or "http://localhost:8000"
        expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() + self.settings.link_ttl))
        recipient: dict[str, Any] = {"email": payload.notify.email}
        if payload.notify.name:
            recipient["name"] = payload.notify.name
        body = {
            "type": "email.send",
            "payload": {
                "to": [recipient],
                "template": "report_ready",
                "vars": {"title": payload.title, "download_url": base + path, "expires_at": expires},
            },
        }
        job_id = str(uuid.uuid5(uuid.UUID(ctx.job_id), "notify"))
        prepared = self.publisher.preparer.prepare(body, tenant=ctx.tenant, job_id=job_id)
        submitted = self.publisher.enqueue(dataclasses.replace(prepared, parent_id=ctx.job_id))
        return submitted.job_id


def _bad_cell(number: int, row: dict[str, Any], columns: list[Column]) -> PermanentJobError:
    """The error for the first cell of ``row`` its column cannot hold."""
    for column in columns:
        value = row.get(column.name)
        try:
            cells.converter(column, spreadsheet=False)(value)
        except (ValueError, TypeError, AttributeError):
            shown = repr(value)[:40]
            return PermanentJobError(
                f"Row {number}, column {column.name!r}: {shown} is not a valid {column.type}.", code="bad_source_data"
            )
    return PermanentJobError(f"Row {number} could not be read.", code="bad_source_data")


def _slug(title: str) -> str:
    """A file name from the report's title: letters, digits and dashes, never empty."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()[:60]
    return slug or "report"


#: The job types these handlers serve, each bound to its contract.
build = served_by(ReportHandlers, ReportHandlers.build, BUILD)
