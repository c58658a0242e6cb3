"""``/v1/jobs``: submit, read, list, cancel and retry jobs."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from offload import problems
from offload.errors import InvalidState, NotFound, ValidationFailed
from offload.numbers import whole_number
from offload.status import JobRecord, JobState
from offload.status.filters import JobFilter
from offload.submission import MAX_IDEMPOTENCY_KEY, TAG_PATTERN, idempotency_key_rule
from offload_api import actions
from offload_api.admission import ADMITTED_AT
from offload_api.audit import admin_action
from offload_api.auth import caller, check_scope, requires
from offload_api.bodies import json_body
from offload_api.browser import TOKEN_PARAMETER, issue_token, readable_with_token
from offload_api.extension import services
from offload_api.openapi_meta import Link, Operation, documented
from offload_api.traced import submit_span
from offload_api.views.queues import paused_target

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")

_ERRORS = {401: ("Missing or invalid API key.", "Error"), 503: ("Broker or Redis unavailable; retry later.", "Error")}

#: Where an accepted job leads (OpenAPI links, by the ``id`` of the answer).
_ACCEPTED_LINKS = {
    "GetJob": Link("jobs.get_job", {"job_id": "$response.body#/id"}, "The job's record."),
    "FollowJobEvents": Link("events.job_events", {"job_id": "$response.body#/id"}, "The job's changes as they happen."),
    "GetJobLogs": Link("jobs.get_job_logs", {"job_id": "$response.body#/id"}, "The job's log."),
    "CancelJob": Link("jobs.cancel_job", {"job_id": "$response.body#/id"}, "Cancel the job."),
}

#: The time-range query parameters of a listing, and what each keeps.
TIME_FILTERS = {
    "created_from": "created at or after this",
    "created_to": "created before this",
    "finished_from": "that ended at or after this",
    "finished_to": "that ended before this",
}


#: What :func:`idempotency_key` accepts: printable ASCII, with no space at either end (HTTP strips those).
IDEMPOTENCY_KEY: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_IDEMPOTENCY_KEY,
    "pattern": "^[!-~]([ -~]*[!-~])?$",
}


def public_base() -> str:
    """The base of every absolute URL the API answers with: ``OFFLOAD_PUBLIC_URL`` when it is set.

    Only without it is the request's own ``Host`` used (development): a client choosing the host of
    the links it is sent would otherwise point them anywhere (issue 29, item 6).
    """
    return services().settings.public_url.rstrip("/") or request.host_url.rstrip("/")


def job_links(job_id: str) -> dict[str, str]:
    """The status and events URLs of a job (built by hand: ``url_for`` twice per request showed in profiles)."""
    status_url = f"{public_base()}/v1/jobs/{job_id}"
    return {"status_url": status_url, "events_url": f"{status_url}/events"}


def job_token(job_id: str, tenant: str, ttl: int) -> dict[str, str]:
    """A browser token reading ``tenant``'s job ``job_id`` for ``ttl`` seconds: ``{"token", "token_expires_at"}``."""
    return issue_token(tenant, f"job:{job_id}", ttl)


def find_job(job_id: str) -> JobRecord:
    """The caller's job, or 404 (another tenant's job and a malformed id look the same as an unknown one).

    Raises:
        NotFound: no such job for this caller.
    """
    record = services().store.queries.get(job_id, tenant=caller().scope) if _is_uuid(job_id) else None
    if record is None:
        raise NotFound(f"Job {job_id[:64]!r} does not exist.")
    return record


@bp.post("")
@requires("client")
@documented(
    Operation(
        "Submit a job",
        description=(
            "Validates the job against its type's contract (the payload's schema, the options, and the URLs and "
            "email addresses it names), records it and publishes it: the answer is 202 once RabbitMQ has confirmed "
            "the message, so an accepted job is not lost. With an `Idempotency-Key`, the same key and body answer "
            "the first submission's job (200) and another body is a 409. A 422 names each field in `errors`. "
            'With `"token": true` the answer also carries a browser token for the job (`token`, '
            "`token_expires_at`): read-only, valid `OFFLOAD_BROWSER_TOKEN_TTL` seconds, usable as `?token=` on its "
            "`status_url` and `events_url`."
        ),
        request="JobRequest",
        headers=(
            ("Idempotency-Key", IDEMPOTENCY_KEY, "Same key and body return the same job; another body is a 409."),
        ),
        responses={
            200: ("The Idempotency-Key and body match an earlier submission: that job, not a new one.", "JobAccepted"),
            202: ("Accepted: recorded and confirmed by the broker.", "JobAccepted"),
            400: ("Malformed JSON.", "Error"),
            403: ("The key may not submit.", "Error"),
            409: ("Idempotency-Key reused with another body.", "Error"),
            413: ("Body too large.", "Error"),
            415: ("Not JSON.", "Error"),
            422: ("Invalid job.", "Error"),
            **_ERRORS,
        },
        links={200: _ACCEPTED_LINKS, 202: _ACCEPTED_LINKS},
    )
)
@submit_span
def submit_job() -> tuple[Response, int, dict[str, str]]:
    """Validate, record and publish a job; 202 once the broker confirmed it."""
    body = json_body()
    check_scope(body)
    found = services()
    if isinstance(body, dict) and body.get("type") in found.registry:
        g.job_type = body["type"]  # a registered name: a bounded metrics label
    key = idempotency_key()
    admitted = request.environ.get(ADMITTED_AT, time.monotonic())
    deadline = admitted + found.settings.submit_deadline
    submitted = found.publisher.submit(body, tenant=caller().tenant, idempotency_key=key, deadline=deadline)
    links = job_links(submitted.job_id)
    payload: dict[str, object] = {"id": submitted.job_id, "state": submitted.state, **links}
    if g.get("job_type"):
        contract = found.registry.get(g.job_type)
        if paused_target(found, contract.queue, contract.name) is not None:
            payload["queue_paused"] = True  # accepted; it starts when its queue is resumed
    if isinstance(body, dict) and body.get("token") is True:  # validated by the submission's schema
        payload.update(job_token(submitted.job_id, caller().tenant, found.settings.browser_token_ttl))
    return jsonify(payload), (200 if submitted.replayed else 202), {"Location": links["status_url"]}


@bp.get("")
@requires("reader")
@documented(
    Operation(
        "List jobs, most recently changed first",
        description=(
            "A page of the caller's jobs (an admin's: every tenant's, or one tenant's with `tenant`), optionally "
            "only those in one state, of one type, with one error code or tag, created or ended within a time range, "
            "ordered by the moment each entered its state (a finished job: when it ended), newest first. Pass a "
            "page's `next_cursor` as `cursor` to read the next page; a page may hold fewer than `limit` jobs while "
            "`next_cursor` is given (a page reads at most a few thousand index entries)."
        ),
        query=(
            ("state", {"type": "string", "enum": [s.value for s in JobState]}, "Only jobs in this state."),
            ("type", {"type": "string"}, "Only jobs of this type."),
            ("error_code", {"type": "string"}, "Only jobs whose error has this code (retrying, failed or dead)."),
            (
                "tag",
                {"type": "string", "pattern": TAG_PATTERN},
                "Only jobs carrying this tag, newest first by creation (a delayed job: by its due time); pages may "
                "be short while next_cursor is set.",
            ),
            *(
                (name, {"type": "string", "format": "date-time"}, f"Only jobs {what} (ISO 8601 with an offset).")
                for name, what in TIME_FILTERS.items()
            ),
            ("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "Page size."),
            ("cursor", {"type": "string"}, "The next_cursor of the previous page."),
            ("tenant", {"type": "string"}, "Admins only: one tenant's jobs."),
        ),
        responses={200: ("A page of jobs.", "JobPage"), 422: ("Bad filter.", "Error"), **_ERRORS},
    )
)
def list_jobs() -> Response:
    """A page of the caller's jobs, filtered by state, type, error code and time ranges."""
    who = caller()
    where = job_filter_from_query(tenant=request.args.get("tenant") if who.is_admin else None, scope=who.scope)
    limit = _limit(request.args.get("limit", "50"))
    try:
        page = services().store.queries.search(where, limit=limit, cursor=request.args.get("cursor"))
    except ValueError as exc:
        raise ValidationFailed(
            str(exc), errors=[problems.parameter("cursor", "invalid_cursor", "not a valid cursor")]
        ) from None
    return jsonify({"jobs": [r.public() for r in page.records], "next_cursor": page.cursor})


def job_filter_from_query(*, tenant: str | None, scope: str | None, args: Mapping[str, str] | None = None) -> JobFilter:
    """The filter the query string (or the form ``args``) names: state, type, error code, tag, time ranges.

    ``scope`` is the caller's tenant (None for an admin, who may name one as ``tenant``).

    Raises:
        ValidationFailed: a state or time is not valid.
    """
    args = request.args if args is None else args
    moments: dict[str, int | None] = {}
    for name in TIME_FILTERS:
        raw = args.get(name) or None
        moments[name] = _moment(name, raw) if raw else None
    return JobFilter(
        tenant=scope if scope is not None else (tenant or None),
        state=_state_filter(args.get("state")),
        job_type=args.get("type") or None,
        error_code=args.get("error_code") or None,
        tag=tag_filter(args.get("tag")),
        **moments,
    )


def _moment(name: str, raw: str) -> int:
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValidationFailed(
            f"{name} must be an ISO 8601 time with an offset, e.g. 2026-01-31T12:00:00Z.",
            errors=[problems.parameter(name, "datetime_parsing", "an ISO 8601 time with an offset")],
        )
    return int(moment.timestamp() * 1000)


@bp.get("/<job_id>")
@readable_with_token(lambda job_id: f"job:{job_id}")
@documented(
    Operation(
        "Get a job",
        description=(
            "The job's record: its state, progress, result or error, attempts and times, its tags and metadata, "
            "with the history of its state changes. Another tenant's job is a 404, as an unknown one is. Readable "
            "with the job's browser token (`?token=`) instead of a key."
        ),
        query=(TOKEN_PARAMETER,),
        responses={200: ("The job.", "Job"), 404: ("No such job.", "Error"), **_ERRORS},
    )
)
def get_job(job_id: str) -> Response:
    """The job's state, progress, result or error, with its history."""
    record = find_job(job_id)
    document = record.public()
    document["history"] = services().store.queries.history(job_id)
    return jsonify(document)


@bp.get("/<job_id>/logs")
@requires("reader")
@documented(
    Operation(
        "Read a job's log",
        description=(
            "The lines the job's handler wrote to its log, oldest first (the newest 200 are kept). A running job's "
            "new lines also arrive as `log` events on its event stream."
        ),
        responses={200: ("The job's log lines.", "JobLogs"), 404: ("No such job.", "Error"), **_ERRORS},
    )
)
def get_job_logs(job_id: str) -> Response:
    """The lines the job's handler wrote to its log, oldest first (also sent as ``log`` events)."""
    find_job(job_id)
    return jsonify({"logs": services().store.queries.logs(job_id)})


@bp.post("/<job_id>/cancel")
@requires("client")
@documented(
    Operation(
        "Cancel a job",
        description=(
            "A job that has not started is cancelled at once. A running job is asked to stop (`cancel_requested`): "
            "its handler stops at its next check and the job ends `cancelled`. A job that already ended is a 409."
        ),
        responses={
            200: ("Cancelled, or cancel requested of a running job.", "Job"),
            404: ("No such job.", "Error"),
            409: ("The job already ended.", "Error"),
            **_ERRORS,
        },
    )
)
def cancel_job(job_id: str) -> Response:
    """Cancel a waiting job at once; ask a running one to stop (its handler checks between steps)."""
    find_job(job_id)
    outcome, final = services().store.lifecycle.cancel(job_id, tenant=caller().scope)
    admin_action("job.cancel", job_id, f"refused: already {final}" if outcome == "final" else "ok")
    if outcome == "final":
        raise InvalidState(f"Job {job_id!r} already ended ({final}); it cannot be cancelled.")
    return jsonify(find_job(job_id).public())


@bp.post("/<job_id>/retry")
@requires("client")
@documented(
    Operation(
        "Retry a failed, dead or cancelled job",
        description="Queues the job again with its original payload and options; its attempts keep counting.",
        responses={
            202: ("Queued again.", "JobAccepted"),
            404: ("No such job.", "Error"),
            409: ("The job is not failed, dead or cancelled.", "Error"),
            **_ERRORS,
        },
    )
)
def retry_job(job_id: str) -> tuple[Response, int]:
    """Queue the job again with its original payload; its attempts keep counting."""
    find_job(job_id)
    actions.retry(services(), job_id, scope=caller().scope)
    admin_action("job.retry", job_id)
    return jsonify({"id": job_id, "state": "queued", **job_links(job_id)}), 202


def idempotency_key() -> str | None:
    """The ``Idempotency-Key`` header, checked.

    Raises:
        ValidationFailed: the key is empty, too long or not printable ASCII.
    """
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    rule = idempotency_key_rule(key)
    if rule is None:
        return key
    raise ValidationFailed(
        f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters.",
        errors=[problems.parameter("Idempotency-Key", rule, "invalid header value")],
    )


def tag_filter(raw: str | None) -> str | None:
    """The ``tag`` query parameter, checked (None when absent).

    Raises:
        ValidationFailed: not a tag (1-64 characters of letters, digits and ``_.:/-``).
    """
    if not raw:
        return None
    if re.fullmatch(TAG_PATTERN, raw) is None:
        raise ValidationFailed(
            "tag must be 1-64 characters of letters, digits and _.:/-.",
            errors=[problems.parameter("tag", "string_pattern_mismatch", f"must match {TAG_PATTERN}")],
        )
    return raw


def _state_filter(raw: str | None) -> JobState | None:
    if not raw:
        return None
    try:
        return JobState(raw)
    except ValueError:
        raise ValidationFailed(
            f"Unknown state {raw[:32]!r}.",
            errors=[problems.parameter("state", "enum", f"one of {[s.value for s in JobState]}")],
        ) from None


def _limit(raw: str) -> int:
    limit = whole_number(raw)
    if limit is None:
        rule = "int_parsing"
    elif limit < 1:
        rule = "greater_than_equal"
    elif limit > 200:
        rule = "less_than_equal"
    else:
        return limit
    raise ValidationFailed(
        "limit must be an integer from 1 to 200.", errors=[problems.parameter("limit", rule, "1-200")]
    )


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False
