"""``/v1/batches``: many jobs in one request, followed as one."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from offload import problems
from offload.errors import NotFound, ValidationFailed
from offload_api.auth import caller, check_scope, requires
from offload_api.bodies import json_body
from offload_api.extension import services
from offload_api.openapi_meta import Operation, documented
from offload_api.traced import submit_span
from offload_api.views.flows import flow_links
from offload_api.views.jobs import job_links, public_base

bp = Blueprint("batches", __name__, url_prefix="/v1/batches")


@bp.post("")
@requires("client")
@documented(
    Operation(
        "Submit a batch of jobs",
        description=(
            "Validates every job first: if one is invalid none is submitted, and the 422 names the job's index in "
            "each field (`jobs[2].payload.to`). Then records and publishes them together, and answers the batch's "
            "id and each job's. A batch is a flow whose jobs need nothing (its id is the flow's): it ends when "
            "every job has, with a `flow` event on `GET /v1/flows/{id}/events` (its `events_url`). With `then` (a "
            "job submission), that job runs once every job of the batch has ended, succeeded or not, and reads "
            'each one\'s result or failure (`ctx.child_results`, by index: `"0"`, `"1"`, ...).'
        ),
        request="BatchRequest",
        tag="batches",
        responses={
            202: ("All jobs recorded and confirmed.", "BatchAccepted"),
            400: ("Malformed JSON.", "Error"),
            403: ("The key may not submit, or not one of the jobs' types (`job_type` names it).", "Error"),
            413: ("Body too large.", "Error"),
            415: ("Not JSON.", "Error"),
            422: ("A job is invalid (its index is in the field path); none was submitted.", "Error"),
            401: ("Missing or invalid API key.", "Error"),
            503: ("Broker or Redis unavailable.", "Error"),
        },
    )
)
@submit_span
def submit_batch() -> tuple[Response, int, dict[str, str]]:
    """Validate every job first (all or none), then record and publish them together."""
    body = json_body()
    limit = services().settings.max_batch_jobs
    problem = _shape_problem(body, limit)
    if problem is not None:
        raise ValidationFailed(f'The body must be {{"jobs": [...]}} with 1 to {limit} jobs.', errors=[problem])
    check_scope(body["jobs"], body.get("then"))
    submitted = services().publisher.submit_batch(body["jobs"], tenant=caller().tenant, then=body.get("then"))
    url = f"{public_base()}/v1/batches/{submitted.batch_id}"
    document: dict[str, object] = {
        "id": submitted.batch_id,
        "status_url": url,
        "events_url": flow_links(submitted.batch_id)["events_url"],
        "jobs": [{"id": job.job_id, "state": job.state, **job_links(job.job_id)} for job in submitted.jobs],
    }
    if submitted.then is not None:
        document["then"] = {
            "name": "then",
            "id": submitted.then.job_id,
            "state": submitted.then.state,
            **job_links(submitted.then.job_id),
        }
    return jsonify(document), 202, {"Location": url}


def _shape_problem(body: object, limit: int) -> dict[str, object] | None:
    """What is wrong with the batch's envelope (``{"jobs": [...], "then": {...}}``, 1 to ``limit`` jobs), or None."""
    expected = f"a list of 1-{limit} job submissions"
    if not isinstance(body, dict):
        return problems.in_body("body", "dict_type", 'must be {"jobs": [...]}')
    extra = sorted(set(body) - {"jobs", "then"})
    if extra:
        return problems.located((extra[0],), "extra_forbidden", "not a member of a batch")
    if "jobs" not in body:
        return problems.in_body("jobs", "missing", expected)
    jobs = body["jobs"]
    if not isinstance(jobs, list):
        return problems.in_body("jobs", "list_type", expected)
    if not jobs:
        return problems.in_body("jobs", "too_short", expected)
    if len(jobs) > limit:
        return problems.in_body("jobs", "too_long", expected)
    return None


@bp.get("/<batch_id>")
@requires("reader")
@documented(
    Operation(
        "Get a batch's aggregate status",
        description=(
            "Counts per state, overall progress (a finished job counts as 100) and each job's state; the batch's "
            "state as a flow's (`running` until every job, and `then`, has ended), and its `then` job if any."
        ),
        tag="batches",
        responses={
            200: ("Counts per state, overall progress and each job's state.", "Batch"),
            404: ("No such batch.", "Error"),
            401: ("Missing or invalid API key.", "Error"),
            503: ("Redis unavailable.", "Error"),
        },
    )
)
def get_batch(batch_id: str) -> Response:
    """Counts per state, overall progress (finished jobs count as 100) and each job's state."""
    batch = services().batches.get(batch_id[:64], tenant=caller().scope)
    if batch is None:
        raise NotFound(f"Batch {batch_id[:64]!r} does not exist.")
    return jsonify(batch)
