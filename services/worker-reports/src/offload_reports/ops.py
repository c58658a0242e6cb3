"""Handlers of Offload's own periodic jobs served by the reports worker (statistics, maintenance)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from offload import dead_letters
from offload.contracts import Registry
from offload.contracts.ops import (
    AGGREGATE,
    DAILY_OPS,
    MAINTENANCE,
    AggregatePayload,
    AggregateResult,
    AuditExport,
    DailyOpsPayload,
    DeadLetterExport,
    MaintenancePayload,
    MaintenanceResult,
)
from offload.contracts.reports import Column, Notify, ReportPayload, ReportResult
from offload.errors import PermanentJobError
from offload.jobs import served_by
from offload.signing import LinkSigner
from offload.status import StatusStore
from offload.status.audit import AuditLog
from offload.status.stats import HOUR, aggregate, hour_of, read
from offload.storage import Storage, make_key
from offload.worker import JobContext
from offload_reports.handlers import ReportHandlers

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpsHandlers:
    """Entry points for the periodic jobs on the ``reports`` queue."""

    store: StatusStore
    storage: Storage
    signer: LinkSigner
    registry: Registry
    broker_url: str
    #: Builds the daily operations report.
    reports: ReportHandlers

    def aggregate(self, ctx: JobContext, payload: AggregatePayload) -> AggregateResult:
        """Compute the ``hours`` full hours before ``until`` (the hour it falls in is not full yet).

        Raises:
            PermanentJobError: ``until`` is not an ISO 8601 time.
        """
        try:
            until = datetime.fromisoformat(payload.until) if payload.until else datetime.now(UTC)
        except ValueError:
            raise PermanentJobError(f"{payload.until!r} is not an ISO 8601 time.", code="invalid_time") from None
        if until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        last = hour_of(until) - HOUR
        hours = [last - HOUR * back for back in reversed(range(payload.hours))]
        jobs = groups = 0
        for done, hour in enumerate(hours, start=1):
            counted, grouped = aggregate(self.store, hour)
            jobs, groups = jobs + counted, groups + grouped
            ctx.progress(100 * done / len(hours), hour.isoformat())
        logger.info(
            "Statistics of %d hour(s) up to %s: %d jobs in %d groups.", len(hours), last.isoformat(), jobs, groups
        )
        return AggregateResult(hours=[h.isoformat() for h in hours], jobs=jobs, groups=groups)

    def maintenance(self, ctx: JobContext, payload: MaintenancePayload) -> MaintenanceResult:
        """Export old dead letters of every queue to storage (then remove them); trim the indexes."""
        exported = dead_letters.export(
            self.broker_url,
            self.registry.queues,
            self.storage,
            lambda queue: make_key(ctx.tenant, ctx.job_id, f"{queue}.XQ.jsonl"),
            older_than=payload.dead_letters_older_than,
        )
        for item in exported:
            logger.warning("Exported %d dead letters of %s before they expire.", item.count, item.queue)
        ctx.progress(70, "dead letters exported")
        audited = self._export_audit(make_key(ctx.tenant, ctx.job_id, "audit.jsonl"))
        ctx.progress(80, "audit log exported")
        trimmed = self.store.janitor.trim_indexes()
        return MaintenanceResult(
            index_entries_removed=trimmed,
            audit=audited,
            dead_letters=[
                DeadLetterExport(queue=item.queue, count=item.count, url=self.signer.path(item.key))
                for item in exported
            ],
        )

    def _export_audit(self, key: str) -> AuditExport | None:
        """Write the audit entries recorded since the last export beside the dead letters, then mark them."""
        settings = self.reports.settings
        log = AuditLog(self.store, retention=settings.audit_retention, max_entries=settings.audit_max_entries)
        entries = log.unexported()
        if not entries:
            return None
        self.storage.put(key, [json.dumps(entry.public(), ensure_ascii=False).encode() + b"\n" for entry in entries])
        log.mark_exported(entries[-1].id)
        return AuditExport(count=len(entries), url=self.signer.path(key))

    def daily_ops(self, ctx: JobContext, payload: DailyOpsPayload) -> ReportResult:
        """One row per job type and tenant for the day: counts by state and the failure rate, as XLSX.

        The day is that of the scheduler's time zone (``OFFLOAD_TIMEZONE``); the report goes to
        ``OFFLOAD_ADMIN_EMAIL`` when it is set.

        Raises:
            PermanentJobError: ``day`` is not a date.
        """
        zone = ZoneInfo(self.reports.settings.timezone)
        try:
            day = date.fromisoformat(payload.day) if payload.day else datetime.now(zone).date() - timedelta(days=1)
        except ValueError:
            raise PermanentJobError(f"{payload.day!r} is not a date.", code="invalid_time") from None
        start = datetime.combine(day, time.min, zone)
        stats = read(self.store, start, start + timedelta(days=1), tenant=None, job_type=None)
        states = ("succeeded", "failed", "dead", "cancelled")
        rows = [
            {
                "type": total["type"],
                "tenant": total["tenant"],
                **{state: total["counts"].get(state, 0) for state in states},
                "failure_rate": total["failure_rate"],
            }
            for total in stats["totals"]
        ]
        columns = [
            Column(name="type", title="Job type"),
            Column(name="tenant", title="Tenant"),
            *(Column(name=state, title=state.capitalize(), type="integer", format="#,##0") for state in states),
            Column(name="failure_rate", title="Failure rate", type="number", format="0.00%"),
        ]
        admin = self.reports.settings.admin_email
        report = ReportPayload(
            title=f"Offload operations {day.isoformat()}",
            columns=columns,
            rows=rows,
            output="xlsx",
            totals=True,
            notify=Notify(email=admin) if admin else None,
        )
        return self.reports.build(ctx, report)


#: The job types these handlers serve, each bound to its contract.
stats_aggregate = served_by(OpsHandlers, OpsHandlers.aggregate, AGGREGATE)
maintenance_cleanup = served_by(OpsHandlers, OpsHandlers.maintenance, MAINTENANCE)
report_daily_ops = served_by(OpsHandlers, OpsHandlers.daily_ops, DAILY_OPS)
