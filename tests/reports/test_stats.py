"""Issue 6, must-show 4: GET /v1/stats counts a known mix of succeeded and failed jobs right."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import dramatiq
import jsonschema
from openpyxl import load_workbook

from offload.publish import Publisher
from offload.testing import serving
from tests.helpers import wait_for
from tests.support import Api, RunningWorker
from tests.support.email import Sink
from tests.support.reports import report_settings

from offload_reports.worker import SPEC  # isort: skip


def test_stats_show_the_counts_failure_rates_and_percentiles_of_a_known_mix(
    api: Api, publisher: Publisher, worker: RunningWorker, reports_worker: dramatiq.Worker
) -> None:
    jobs = [publisher.publish("system.noop", {}, tenant="acme").job_id for _ in range(6)]
    jobs += [publisher.publish("system.fail", {"permanent": True}, tenant="acme").job_id for _ in range(3)]
    jobs += [publisher.publish("system.sleep", {"ms": 30, "steps": 1}, tenant="acme").job_id for _ in range(2)]
    jobs += [publisher.publish("system.noop", {}, tenant="globex").job_id for _ in range(4)]
    wait_for(lambda: all(publisher.get(j).state.terminal for j in jobs), timeout=30)

    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()  # the current hour counts as ended
    prepared = publisher.preparer.prepare(
        {"type": "stats.aggregate", "payload": {"until": until}}, tenant="system", internal=True
    )
    aggregated = publisher.wait(publisher.enqueue(prepared).job_id, timeout=30)
    assert aggregated is not None and aggregated.state == "succeeded", aggregated
    assert aggregated.result["jobs"] >= len(jobs)

    mine = api.get("/v1/stats").get_json()
    components = api.get("/openapi.json").get_json()["components"]
    jsonschema.validate(mine, {"$ref": "#/components/schemas/Stats", "components": components})
    totals = {(t["type"], t["tenant"]): t for t in mine["totals"]}
    assert set(totals) == {("system.noop", "acme"), ("system.fail", "acme"), ("system.sleep", "acme")}
    assert totals[("system.noop", "acme")]["counts"] == {"succeeded": 6}
    assert totals[("system.noop", "acme")]["failure_rate"] == 0.0
    assert totals[("system.fail", "acme")]["counts"] == {"failed": 3}
    assert totals[("system.fail", "acme")]["failure_rate"] == 1.0
    sleeps = [g for hour in mine["hours"] for g in hour["groups"] if g["type"] == "system.sleep"]
    assert sum(g["count"] for g in sleeps) == 2 and all(g["duration_ms"]["p50"] >= 25 for g in sleeps)

    everyone = api.as_("admin").get("/v1/stats?type=system.noop").get_json()
    seen = {(t["tenant"], t["counts"]["succeeded"]) for t in everyone["totals"] if t["tenant"] != "_probe"}
    assert seen == {("acme", 6), ("globex", 4)}  # (_probe: the test worker's readiness probe)
    assert api.get("/v1/stats?from=2026-01-02&to=2026-01-01").status_code == 422
    assert api.get("/v1/stats?type=nope.nope").status_code == 422


def test_schedules_are_listed_with_their_next_run(api: Api) -> None:
    body = api.get("/v1/schedules").get_json()
    components = api.get("/openapi.json").get_json()["components"]
    jsonschema.validate(body, {"$ref": "#/components/schemas/ScheduleList", "components": components})
    names = {s["name"]: s for s in body["schedules"]}
    hourly = names["stats.aggregate.hourly"]
    next_run = datetime.fromisoformat(hourly["next_run_at"])
    assert next_run.minute == 0 and timedelta(0) < next_run - datetime.now(UTC) <= timedelta(hours=1)
    assert hourly["cron"] == "0 * * * *" and hourly["timezone"] == "UTC" and hourly["last_run_at"] is None


def test_the_daily_ops_report_is_an_xlsx_of_the_days_statistics_mailed_to_the_admin(
    api: Api,
    publisher: Publisher,
    worker: RunningWorker,
    email_worker: dramatiq.Worker,
    smtp_sink: tuple[Sink, int],
    servers: None,
) -> None:
    jobs = [publisher.publish("system.noop", {}, tenant="acme").job_id for _ in range(4)]
    jobs += [publisher.publish("system.fail", {"permanent": True}, tenant="acme").job_id]
    wait_for(lambda: all(publisher.get(j).state.terminal for j in jobs), timeout=30)
    with serving(SPEC, report_settings(admin_email="ops@example.com"), threads=2, stop_timeout_ms=10_000):
        until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        for job_type, payload in (
            ("stats.aggregate", {"until": until}),
            ("report.daily_ops", {"day": str(datetime.now(UTC).date())}),
        ):
            prepared = publisher.preparer.prepare(
                {"type": job_type, "payload": payload}, tenant="system", internal=True
            )
            record = publisher.wait(publisher.enqueue(prepared).job_id, timeout=30)
            assert record is not None and record.state == "succeeded", record
    report = record.result
    assert report["name"].startswith("offload-operations-") and report["notify_job_id"]
    sheet = load_workbook(io.BytesIO(api.anonymous_get(report["url"]).data)).active
    rows = {(r[0], r[1]): r for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert rows[("system.noop", "acme")][2:7] == (4, 0, 0, 0, 0.0)
    assert rows[("system.fail", "acme")][2:7] == (0, 1, 0, 0, 1.0)
    wait_for(lambda: len(smtp_sink[0].messages) == 1, timeout=20)
    assert smtp_sink[0].messages[0]["To"] == "ops@example.com"
