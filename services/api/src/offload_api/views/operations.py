"""``/v1/operations``: bulk retry, cancel or delete of the jobs a filter matches, followed by id.

A tenant's key acts on its own jobs only; an admin's on every tenant's (or one, with
``filter.tenant``). See :mod:`offload_api.bulk` for how an operation runs and survives a restart.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, jsonify

from offload.errors import Forbidden
from offload.status import JobState, iso
from offload.status.filters import JobFilter
from offload.status.operations import OperationRecord
from offload_api import bulk
from offload_api.auth import caller, requires
from offload_api.bodies import model_body
from offload_api.extension import services
from offload_api.openapi_meta import Operation, documented
from offload_api.schemas_ops import JobFilterBody, OperationRequest

bp = Blueprint("operations", __name__, url_prefix="/v1/operations")

_ERRORS = {401: ("Missing or invalid API key.", "Error"), 503: ("Redis unavailable; retry later.", "Error")}


def _ms(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1000) if moment is not None else None


def job_filter(body: JobFilterBody, *, scope: str | None) -> JobFilter:
    """The status store's filter for ``body``, within ``scope`` (the caller's tenant; None for an admin).

    Raises:
        Forbidden: a tenant's key named a tenant.
    """
    if scope is not None and body.tenant is not None and body.tenant != scope:
        raise Forbidden("Only an admin key may name another tenant.")
    return JobFilter(
        tenant=scope if scope is not None else body.tenant,
        state=JobState(body.state) if body.state else None,
        job_type=body.type,
        error_code=body.error_code,
        tag=body.tag,
        created_from=_ms(body.created_from),
        created_to=_ms(body.created_to),
        finished_from=_ms(body.finished_from),
        finished_to=_ms(body.finished_to),
    )


def _document(record: OperationRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "action": record.action,
        "state": record.state,
        "tenant": record.tenant,
        "filter": record.filter,
        "matched": record.matched,
        "done": record.done,
        "skipped": record.skipped,
        "failed": record.failed,
        "created_at": iso(record.created_at),
        "finished_at": iso(record.finished_at),
        "error": record.error,
    }


@bp.post("")
@requires("client")
@documented(
    Operation(
        "Start a bulk operation",
        description=(
            "Retries (failed, dead, cancelled), cancels (waiting or running) or deletes (ended) every job the filter "
            f"matches, in the background: the answer (202) gives the operation's id at once. At most {bulk.MAX_JOBS} "
            "jobs per operation: a filter matching more is a 422 `too_many_jobs`. Each job is acted on once; one that "
            "no longer fits the action when its turn comes is counted as skipped. A tenant's key acts on its own "
            "jobs only."
        ),
        tag="operations",
        request="OperationRequest",
        responses={
            202: ("Started.", "OperationProgress"),
            400: ("Malformed JSON.", "Error"),
            403: ("A tenant's key named another tenant, or the key may not submit.", "Error"),
            415: ("Not JSON.", "Error"),
            422: ("A field is invalid, or the filter matches too many jobs.", "Error"),
            **_ERRORS,
        },
    )
)
def create() -> tuple[Response, int, dict[str, str]]:
    """Match the jobs, record the operation and start it in the background."""
    wanted = model_body(OperationRequest)
    where = job_filter(wanted.filter, scope=caller().scope)
    described = {name: str(value) for name, value in wanted.filter.model_dump(exclude_none=True).items()}
    found = services()
    operation_id = bulk.create(found, wanted.action, where, described)
    record = bulk.operations(found).get(operation_id)
    assert record is not None  # just written
    return jsonify(_document(record)), 202, {"Location": f"/v1/operations/{operation_id}"}


@bp.get("/<operation_id>")
@requires("reader")
@documented(
    Operation(
        "Follow a bulk operation",
        description=(
            "Its state (`running`, then `succeeded`, or `failed` with an `error`) and progress: the jobs matched, "
            "done, skipped and failed. An operation whose API process stopped is resumed by this read. Another "
            "tenant's operation is a 404."
        ),
        tag="operations",
        responses={200: ("The operation.", "OperationProgress"), 404: ("No such operation.", "Error"), **_ERRORS},
    )
)
def get(operation_id: str) -> Response:
    """The operation's state and progress; one left without a runner is resumed here."""
    return jsonify(_document(bulk.follow(services(), operation_id, tenant=caller().scope)))
