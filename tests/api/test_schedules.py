"""Issue 22, schedules owned by users: made, read, changed, paused, run and deleted over the API, per tenant.

Bad schedules get a 422 naming the field (the job's as ``POST /v1/jobs`` names it, under ``job``);
the shipped schedules stay listed and read-only. The scheduler's side is in
``tests/scheduler/test_user_schedules.py`` and ``tests/system/test_user_schedules.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from flask import Flask

from offload.errors import Conflict
from offload.publish import Publisher
from offload_api import schedule_actions
from offload_api.extension import KEY
from tests.support import Api

NOOP = {"type": "system.noop", "payload": {}}


def _validate(api: Api, body: Any, schema: str) -> None:
    components = api.get("/openapi.json").get_json()["components"]
    jsonschema.validate(body, {"$ref": f"#/components/schemas/{schema}", "components": components})


def _make(api: Api, **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/schedules", json={"interval": 60, "job": NOOP, **fields})
    assert response.status_code == 201, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({"cron": "every minute", "job": NOOP}, "cron", "cron_expression"),
        ({"cron": "61 * * * *", "job": NOOP}, "cron", "cron_expression"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus", "job": NOOP}, "timezone", "unknown_timezone"),
        ({"cron": "* * * * *", "timezone": "../../etc/passwd", "job": NOOP}, "timezone", "unknown_timezone"),
        ({"cron": "* * * * * *", "job": NOOP}, "cron", "cron_expression"),
        ({"cron": "0 0 31 2 *", "job": NOOP}, "cron", "cron_expression"),
        ({"interval": 0, "job": NOOP}, "interval", "greater_than_equal"),
        ({"interval": 1.5, "job": NOOP}, "interval", "int_type"),
        ({"cron": "* * * * *", "interval": 5, "job": NOOP}, "cron", "one_of_cron_interval"),
        ({"job": NOOP}, "cron", "one_of_cron_interval"),
        ({"interval": 5}, "job", "missing"),
        ({"interval": 5, "job": NOOP, "missed": "sometimes"}, "missed", "literal_error"),
        ({"interval": 5, "job": NOOP, "catch_up_limit": 1000}, "catch_up_limit", "less_than_equal"),
        ({"interval": 5, "job": {"type": "system.sleep", "payload": {"ms": "long"}}}, "job.payload.ms", "int_type"),
        ({"interval": 5, "job": {**NOOP, "options": {"priority": "urgent"}}}, "job.options.priority", "literal_error"),
        ({"interval": 5, "job": NOOP, "every": 5}, "every", "extra_forbidden"),
    ],
)
def test_a_bad_schedule_gets_a_422_naming_its_field(api: Api, body: dict[str, Any], field: str, rule: str) -> None:
    response = api.post("/v1/schedules", json=body)
    assert response.status_code == 422, response.get_json()
    problem = response.get_json()
    assert problem["error"] == "validation_failed"
    assert (field, rule) in {(e["field"], e["rule"]) for e in problem["errors"]}, problem


def test_an_unknown_or_internal_job_type_is_refused_as_a_submission_is(api: Api) -> None:
    for job_type in ("no.such", "maintenance.cleanup"):
        body = {"interval": 5, "job": {"type": job_type, "payload": {}}}
        response = api.post("/v1/schedules", json=body)
        assert response.status_code == 422 and response.get_json()["error"] == "unknown_job_type"
        assert api.submit(job_type).get_json()["error"] == "unknown_job_type"  # the same answer as POST /v1/jobs
    assert api.post("/v1/schedules", json=[1]).status_code == 422
    assert api.post("/v1/schedules", data="{", content_type="application/json").status_code == 400
    assert api.get("/v1/schedules").get_json()["schedules"][-1]["owner"] == "system"  # nothing was stored


def test_a_schedule_is_made_read_changed_paused_and_deleted_by_its_tenant_only(api: Api) -> None:
    made = _make(api, name="nightly", cron="30 2 * * *", interval=None, timezone="Europe/Berlin")
    _validate(api, made, "ScheduleItem")
    assert made["owner"] == "acme" and made["paused"] is False and made["last_run"] is None
    next_run = datetime.fromisoformat(made["next_run_at"])
    assert (next_run.hour, next_run.minute) == (2, 30)
    assert next_run.utcoffset() in (timedelta(hours=1), timedelta(hours=2))  # Berlin's time
    path = f"/v1/schedules/{made['id']}"
    assert api.get(path).get_json()["id"] == made["id"]
    # Another tenant neither sees nor touches it; an admin sees and acts on every tenant's.
    globex = api.as_("globex")
    assert globex.get(path).status_code == 404 and globex.call("DELETE", path).status_code == 404
    assert made["id"] not in {s["id"] for s in globex.get("/v1/schedules").get_json()["schedules"]}
    assert made["id"] in {s["id"] for s in api.as_("admin").get("/v1/schedules").get_json()["schedules"]}
    assert api.as_("acme_reader").call("PATCH", path, json={"name": "x"}).status_code == 403
    # A change is checked as a whole; a bad one changes nothing.
    bad = api.call("PATCH", path, json={"interval": 30})
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["rule"] == "one_of_cron_interval"
    changed = api.call("PATCH", path, json={"cron": None, "interval": 30, "missed": "skip"}).get_json()
    assert (changed["cron"], changed["interval"], changed["missed"], changed["name"]) == (None, 30, "skip", "nightly")
    due_in = datetime.fromisoformat(changed["next_run_at"]) - datetime.now(UTC)
    assert timedelta(0) < due_in <= timedelta(seconds=31)  # a new timing counts from now
    paused = api.post(f"{path}/pause").get_json()
    assert paused["paused"] is True and paused["next_run_at"] is None and paused["paused_at"]
    resumed = api.post(f"{path}/resume").get_json()
    assert resumed["paused"] is False and resumed["next_run_at"] is not None
    _validate(api, api.get("/v1/schedules").get_json(), "ScheduleList")
    deleted = api.as_("admin").call("DELETE", path)
    assert deleted.status_code == 200 and deleted.get_json()["id"] == made["id"]
    assert api.get(path).status_code == 404 and api.post(f"{path}/run").status_code == 404


def test_run_now_submits_the_job_as_the_schedules_tenant_and_shows_it_as_the_last_run(
    api: Api, publisher: Publisher
) -> None:
    made = _make(api, job={"type": "system.sleep", "payload": {"ms": 1}})
    response = api.as_("admin").post(f"/v1/schedules/{made['id']}/run")
    assert response.status_code == 202
    job_id = response.get_json()["id"]
    record = publisher.get(job_id)
    assert record is not None and record.tenant == "acme" and record.type == "system.sleep"
    last = api.get(f"/v1/schedules/{made['id']}").get_json()["last_run"]
    assert last["job_id"] == job_id and last["state"] == "queued" and last["at"]


def test_the_shipped_schedules_stay_listed_and_read_only(api: Api) -> None:
    listed = api.get("/v1/schedules").get_json()["schedules"]
    shipped = [s for s in listed if s["owner"] == "system"]
    assert shipped and all(s["read_only"] for s in shipped)
    name = shipped[0]["id"]
    one = api.get(f"/v1/schedules/{name}").get_json()
    assert (one["id"], one["cron"], one["read_only"]) == (name, shipped[0]["cron"], True)
    for method, path in (("PATCH", ""), ("DELETE", ""), ("POST", "/pause"), ("POST", "/run")):
        response = api.as_("admin").call(method, f"/v1/schedules/{name}{path}", json={"name": "x"})
        assert response.status_code == 403 and "read-only" in response.get_json()["detail"]


def test_a_change_read_before_another_landed_is_refused_not_merged_over_it(api: Api, app: Flask) -> None:
    made = _make(api, name="first")
    found = app.extensions[KEY]
    stale = schedule_actions.store(found).get(made["id"])  # what a PATCH read before the other one landed
    assert stale is not None
    assert api.call("PATCH", f"/v1/schedules/{made['id']}", json={"name": "second"}).status_code == 200
    with pytest.raises(Conflict, match="changed by another request"):
        schedule_actions.update(found, stale, {"name": "third"})
    assert api.get(f"/v1/schedules/{made['id']}").get_json()["name"] == "second"
