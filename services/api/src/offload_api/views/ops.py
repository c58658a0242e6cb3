"""What the jobs did: ``/v1/stats`` (the schedules are in ``views/schedules.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, Response, jsonify, request

from offload import problems
from offload.errors import ValidationFailed
from offload.status import redis_errors
from offload.status.stats import read
from offload_api.auth import caller, requires
from offload_api.extension import services
from offload_api.openapi_meta import Operation, documented

bp = Blueprint("ops", __name__)

#: The widest range one stats request may cover.
MAX_RANGE = timedelta(days=31)
#: The times a stats request may name: no job ran before 1970, and a range's arithmetic (its
#: default start a day before its end, UTC offsets, epoch seconds) must stay inside the years
#: ``datetime`` holds; a time outside overflowed into a 500 (issue 29, item 5).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def _time(name: str, default: datetime) -> datetime:
    """The query parameter ``name`` as a time (UTC when it names no offset), or ``default``.

    Raises:
        ValidationFailed: not an ISO 8601 time, or not between :data:`EARLIEST` and :data:`LATEST`.
    """
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(
            f"'{name}' is not an ISO 8601 time.",
            errors=[problems.parameter(name, "datetime_parsing", "not an ISO 8601 time")],
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        within = EARLIEST <= moment.astimezone(UTC) < LATEST
    except OverflowError:  # its offset moves it out of the years datetime holds
        within = False
    if not within:
        raise ValidationFailed(
            f"'{name}' must be a time from {EARLIEST.year} to {LATEST.year - 1}.",
            errors=[problems.parameter(name, "datetime_range", f"a time from {EARLIEST.year} to {LATEST.year - 1}")],
        )
    return moment


@bp.get("/v1/stats")
@requires("reader")
@documented(
    Operation(
        "Hourly job statistics (counts, failure rate, run time and wait percentiles)",
        description=(
            "Jobs created in each hour by type, tenant and state, with run-time and wait percentiles, and totals "
            "with the failure rate over the range: the last 24 hours unless `from` and `to` say otherwise (at most "
            "31 days apart). A tenant sees its own jobs, an admin every tenant's."
        ),
        query=(
            ("from", {"type": "string"}, "Start of the range, ISO 8601 (UTC if no offset); default `to` less 24 h."),
            ("to", {"type": "string"}, "End of the range, ISO 8601 (UTC if no offset); default now."),
            ("type", {"type": "string"}, "Only jobs of this type."),
        ),
        tag="jobs",
        responses={
            200: ("The hours in the range, and totals per type and tenant.", "Stats"),
            401: ("Missing or invalid API key.", "Error"),
            422: ("A bad time or range.", "Error"),
        },
    )
)
def stats() -> Response:
    """``?from=&to=&type=``: the last 24 hours by default; a tenant sees its own jobs, an admin all."""
    now = datetime.now(UTC)
    end = _time("to", now)
    start = _time("from", end - timedelta(hours=24))
    if not start < end or end - start > MAX_RANGE:
        raise ValidationFailed(
            "'from' must be before 'to', at most 31 days apart.",
            errors=[problems.parameter("from", "invalid_range", "must be before 'to', at most 31 days apart")],
        )
    who = caller()
    job_type = request.args.get("type")
    if job_type is not None and job_type not in services().registry:
        raise ValidationFailed(
            "Unknown job type.", errors=[problems.parameter("type", "unknown_job_type", "not a job type")]
        )
    with redis_errors():
        body = read(services().store, start, end, tenant=None if who.is_admin else who.tenant, job_type=job_type)
    return jsonify(body)
