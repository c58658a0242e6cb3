"""``/v1/schedules``: the shipped schedules (read-only) and the ones tenants make, edit, pause and run.

A tenant's schedule submits its job at each tick (a cron expression in a time zone, or an
interval), as that tenant, checked as ``POST /v1/jobs`` checks it: when it is made or changed,
and again at each run. The scheduler sees every change within about a second.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from offload.status import redis_errors
from offload_api import schedule_actions
from offload_api.auth import caller, check_scope, requires
from offload_api.bodies import json_body
from offload_api.extension import services
from offload_api.openapi_meta import Link, Operation, documented
from offload_api.views.jobs import job_links, public_base

bp = Blueprint("schedules", __name__, url_prefix="/v1/schedules")

_ERRORS = {401: ("Missing or invalid API key.", "Error"), 503: ("Redis unavailable; retry later.", "Error")}
_ONE = {
    403: ("A shipped schedule (read-only), or the key may not change schedules.", "Error"),
    404: ("Your tenant has no schedule by this id.", "Error"),
}
_NOT_FOUND = {404: _ONE[404]}
_BODY = {
    400: ("Malformed JSON.", "Error"),
    413: ("Body too large.", "Error"),
    415: ("Not JSON.", "Error"),
    422: ("Invalid schedule: a bad cron, zone, interval or policy, or a job its contract refuses.", "Error"),
}
_LINKS = {
    "GetSchedule": Link("schedules.get_schedule", {"schedule_id": "$response.body#/id"}, "The schedule."),
    "RunSchedule": Link("schedules.run_schedule", {"schedule_id": "$response.body#/id"}, "Run it now."),
}


@bp.get("")
@requires("reader")
@documented(
    Operation(
        "List the schedules with their next and last run",
        description=(
            "The shipped schedules (Offload's own periodic jobs, read-only, `owner` `system`) and your tenant's "
            "(an admin key sees every tenant's): each one's timing, next run, last run (its job and that job's "
            "state) and how many ticks were missed."
        ),
        tag="schedules",
        responses={200: ("Every schedule.", "ScheduleList"), **_ERRORS},
    )
)
def list_schedules() -> Response:
    """The shipped schedules, then the caller's own (an admin's: all)."""
    with redis_errors():
        items = schedule_actions.listing(services(), scope=caller().scope)
    return jsonify({"schedules": items})


@bp.post("")
@requires("client")
@documented(
    Operation(
        "Make a schedule",
        description=(
            "Runs `job` (as in `POST /v1/jobs`: the same contract, options and checks) on a `cron` expression in "
            "`timezone` (IANA), or every `interval` seconds (1 at least), as your tenant. `missed` says what to do "
            "with ticks that passed while no scheduler ran: `skip` them (a tick is still run up to the scheduler's "
            "lock lifetime plus 5 s late, so a failover skips none), `run_once` (the latest), or `run_all` (up to "
            "`catch_up_limit`). The scheduler picks it up within about a second; its first run is its first "
            "tick from now."
        ),
        request="ScheduleRequest",
        tag="schedules",
        responses={
            201: ("Made.", "ScheduleItem"),
            403: ("The key may not make schedules.", "Error"),
            409: ("Your tenant has as many schedules as it may.", "Error"),
            **_BODY,
            **_ERRORS,
        },
        links={201: _LINKS},
    )
)
def create_schedule() -> tuple[Response, int, dict[str, str]]:
    """Validate and store a schedule of the caller's tenant."""
    body = json_body()
    check_scope(body.get("job") if isinstance(body, dict) else None)
    found = services()
    with redis_errors():
        stored = schedule_actions.create(found, body, tenant=caller().tenant)
        item = schedule_actions.describe(found, stored)
    return jsonify(item), 201, {"Location": f"{public_base()}/v1/schedules/{stored.id}"}


@bp.get("/<schedule_id>")
@requires("reader")
@documented(
    Operation(
        "A schedule",
        description=(
            "One of your tenant's schedules (any, for an admin key), or a shipped one by its name, with its next "
            "and last run."
        ),
        tag="schedules",
        responses={200: ("The schedule.", "ScheduleItem"), **_NOT_FOUND, **_ERRORS},
    )
)
def get_schedule(schedule_id: str) -> Response:
    """One of the caller's schedules, or a shipped one."""
    found = services()
    with redis_errors():
        shipped = schedule_actions.shipped(found, schedule_id)
        if shipped is not None:
            return jsonify(shipped)
        stored = schedule_actions.find(found, schedule_id, scope=caller().scope)
        return jsonify(schedule_actions.describe(found, stored))


@bp.patch("/<schedule_id>")
@requires("client")
@documented(
    Operation(
        "Change a schedule",
        description=(
            "The fields given replace the stored ones (send `null` to clear `cron` or `interval` when switching "
            "to the other); the result is checked as a whole, as when it was made. A new timing counts its ticks "
            "from now."
        ),
        request="SchedulePatch",
        tag="schedules",
        responses={
            200: ("Changed.", "ScheduleItem"),
            409: ("Another change landed meanwhile; nothing was written (read it and try again).", "Error"),
            **_ONE,
            **_BODY,
            **_ERRORS,
        },
    )
)
def update_schedule(schedule_id: str) -> Response:
    """Change one of the caller's schedules."""
    body = json_body()
    check_scope(body.get("job") if isinstance(body, dict) else None)
    found = services()
    with redis_errors():
        stored = schedule_actions.find(found, schedule_id, scope=caller().scope)
        stored = schedule_actions.update(found, stored, body)
        return jsonify(schedule_actions.describe(found, stored))


@bp.delete("/<schedule_id>")
@requires("client")
@documented(
    Operation(
        "Delete a schedule",
        description="The scheduler runs it no more (within about a second); the jobs it ran stay.",
        tag="schedules",
        responses={200: ("Deleted: the schedule it was.", "ScheduleItem"), **_ONE, **_ERRORS},
    )
)
def delete_schedule(schedule_id: str) -> Response:
    """Delete one of the caller's schedules; answers it as it was."""
    found = services()
    with redis_errors():
        stored = schedule_actions.find(found, schedule_id, scope=caller().scope)
        item = schedule_actions.describe(found, stored)
        schedule_actions.delete(found, stored)
    return jsonify(item)


@bp.post("/<schedule_id>/pause")
@requires("client")
@documented(
    Operation(
        "Pause a schedule",
        description="No run until it is resumed (the scheduler sees it within about a second).",
        tag="schedules",
        responses={200: ("Paused.", "ScheduleItem"), **_ONE, **_ERRORS},
    )
)
def pause_schedule(schedule_id: str) -> Response:
    """Pause one of the caller's schedules."""
    return _switch(schedule_id, paused=True)


@bp.post("/<schedule_id>/resume")
@requires("client")
@documented(
    Operation(
        "Resume a paused schedule",
        description="It runs again from its next tick; the ticks that passed while it was paused are not run.",
        tag="schedules",
        responses={200: ("Resumed.", "ScheduleItem"), **_ONE, **_ERRORS},
    )
)
def resume_schedule(schedule_id: str) -> Response:
    """Resume one of the caller's schedules."""
    return _switch(schedule_id, paused=False)


@bp.post("/<schedule_id>/run")
@requires("client")
@documented(
    Operation(
        "Run a schedule's job now",
        description=(
            "Submits the schedule's job at once (paused or not) as its tenant, checked as any submission; it "
            "becomes the schedule's last run. The schedule's own ticks are unchanged."
        ),
        tag="schedules",
        responses={
            202: ("Accepted: recorded and confirmed by the broker.", "JobAccepted"),
            **_ONE,
            403: ("A shipped schedule, or the key may not change schedules or submit its job type.", "Error"),
            422: ("The job no longer passes its contract.", "Error"),
            429: ("The tenant's quota for the job type is used up.", "Error"),
            **_ERRORS,
        },
    )
)
def run_schedule(schedule_id: str) -> tuple[Response, int, dict[str, str]]:
    """Submit the schedule's job at once."""
    found = services()
    with redis_errors():
        stored = schedule_actions.find(found, schedule_id, scope=caller().scope)
        check_scope(stored.definition.get("job"))  # a key scoped to other types may not run it either
        submitted = schedule_actions.run_now(found, stored)
    links = job_links(submitted.job_id)
    body = {"id": submitted.job_id, "state": submitted.state, **links}
    return jsonify(body), 202, {"Location": links["status_url"]}


def _switch(schedule_id: str, *, paused: bool) -> Response:
    found = services()
    with redis_errors():
        stored = schedule_actions.find(found, schedule_id, scope=caller().scope)
        return jsonify(schedule_actions.describe(found, schedule_actions.switch(found, stored, paused=paused)))
