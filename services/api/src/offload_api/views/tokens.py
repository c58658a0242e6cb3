"""Browser tokens for a job, a flow, or the change feed (a tag, or the tenant).

``POST /v1/jobs/{id}/token`` (one job), ``POST /v1/flows/{id}/token`` (one flow) and ``POST /v1/events/token``.

A token is what a web page holds instead of an API key (``offload_api.browser``): read-only,
scoped to one job, one flow, one tag's feed or the tenant's feed, signed and short-lived. Asking for one
needs a key that may read what it opens; an admin's token still opens one tenant's things only
(a job's tenant; for the feed, the admin key's own tenant).
"""

from __future__ import annotations

from typing import Any, TypeVar

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel

from offload import problems
from offload.errors import ValidationFailed
from offload.submission import parse_object
from offload_api.auth import caller, requires
from offload_api.bodies import json_body
from offload_api.browser import issue_token
from offload_api.extension import services
from offload_api.openapi_meta import JSON_BODY_ERRORS, Content, Operation, documented
from offload_api.schemas import EventsTokenRequest, JobTokenRequest
from offload_api.views.flows import find_flow
from offload_api.views.jobs import find_job

bp = Blueprint("tokens", __name__, url_prefix="/v1")

M = TypeVar("M", bound=BaseModel)

_ERRORS: dict[int, tuple[str, str | Content | None]] = {
    **JSON_BODY_ERRORS,
    401: ("Missing or invalid API key.", "Error"),
    422: ("Invalid body (ttl below 10 or above the longest allowed, a malformed tag).", "Error"),
    503: ("Redis unavailable; retry later.", "Error"),
}


@bp.post("/jobs/<job_id>/token")
@requires("reader")
@documented(
    Operation(
        "Get a browser token for a job",
        description=(
            "A read-only token for this job, to hand to a web page: it reads the job's status "
            "(`GET /v1/jobs/{job_id}?token=`) and events (`GET /v1/jobs/{job_id}/events?token=`), from the origins "
            "in `OFFLOAD_CORS_ORIGINS`, until it expires (`ttl` seconds, by default `OFFLOAD_BROWSER_TOKEN_TTL`). "
            "It is refused on every other route and for every other job."
        ),
        request="JobTokenRequest",
        responses={201: ("The token.", "BrowserToken"), 404: ("No such job.", "Error"), **_ERRORS},
    )
)
def job_token(job_id: str) -> tuple[Response, int]:
    """A read-only browser token for the caller's job."""
    record = find_job(job_id)
    asked = _body(JobTokenRequest)
    return jsonify(_issue(record.tenant, f"job:{job_id}", asked.ttl)), 201


@bp.post("/flows/<flow_id>/token")
@requires("reader")
@documented(
    Operation(
        "Get a browser token for a flow",
        description=(
            "A read-only token for this flow, to hand to a web page: it reads the flow's status "
            "(`GET /v1/flows/{flow_id}?token=`) and events (`GET /v1/flows/{flow_id}/events?token=`), from the "
            "origins in `OFFLOAD_CORS_ORIGINS`, until it expires (`ttl` seconds, by default "
            "`OFFLOAD_BROWSER_TOKEN_TTL`). It is refused on every other route, for every other flow and for the "
            "flow's jobs (ask for a job's own token)."
        ),
        request="JobTokenRequest",
        tag="flows",
        responses={201: ("The token.", "BrowserToken"), 404: ("No such flow.", "Error"), **_ERRORS},
    )
)
def flow_token(flow_id: str) -> tuple[Response, int]:
    """A read-only browser token for the caller's flow."""
    flow = find_flow(flow_id)
    asked = _body(JobTokenRequest)
    return jsonify(_issue(str(flow["tenant"]), f"flow:{flow['id']}", asked.ttl)), 201


@bp.post("/events/token")
@requires("reader")
@documented(
    Operation(
        "Get a browser token for the change feed",
        description=(
            "A read-only token for `GET /v1/events` of the caller's tenant: with `tag`, only "
            "`GET /v1/events?tag=<tag>&token=`; without, the whole feed with any filter. It expires after `ttl` "
            "seconds (by default `OFFLOAD_BROWSER_TOKEN_TTL`) and is refused on every other route."
        ),
        request="EventsTokenRequest",
        responses={201: ("The token.", "BrowserToken"), **_ERRORS},
    )
)
def events_token() -> tuple[Response, int]:
    """A read-only browser token for the caller's tenant's feed, or one tag of it."""
    asked = _body(EventsTokenRequest)
    return jsonify(_issue(caller().tenant, f"tag:{asked.tag}" if asked.tag else "tenant", asked.ttl)), 201


def _issue(tenant: str, scope: str, ttl: int | None) -> dict[str, Any]:
    settings = services().settings
    longest = settings.max_browser_token_ttl
    if ttl is not None and ttl > longest:
        raise ValidationFailed(
            f"ttl must be at most {longest} seconds.",
            errors=[problems.in_body("ttl", "less_than_equal", f"must be at most {longest}")],
        )
    return {**issue_token(tenant, scope, ttl or settings.browser_token_ttl), "scope": scope}


def _body(model: type[M]) -> M:
    """The request's JSON body as ``model`` (no body: the defaults).

    Raises:
        ValidationFailed: the body does not match ``model``.
    """
    return parse_object(model, json_body() if request.content_length or request.is_json else {}, what="token request")
