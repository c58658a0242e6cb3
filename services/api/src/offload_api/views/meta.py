"""The registry and the API described: ``/v1/job-types``, ``/openapi.json`` and ``/docs``."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from offload_api.auth import requires
from offload_api.docs_page import render_docs
from offload_api.extension import services
from offload_api.openapi import build_openapi
from offload_api.openapi_meta import HTML_PAGE, Operation, documented

bp = Blueprint("meta", __name__)


@bp.get("/v1/job-types")
@requires("reader")
@documented(
    Operation(
        "List job types with their payload schemas",
        description=(
            "Every job type clients may submit, with its queue, default priority, time limit, retry policy and "
            "payload JSON Schema."
        ),
        tag="meta",
        responses={200: ("Every job type.", "JobTypeList"), 401: ("Missing or invalid API key.", "Error")},
    )
)
def job_types() -> Response:
    """Every registered job type: queue, limits, retry policy and payload JSON Schema."""
    items = [
        {
            "type": contract.name,
            "description": contract.description,
            "queue": contract.queue,
            "priority": contract.priority.value,
            "time_limit_seconds": contract.time_limit,
            "retry": {
                "max_retries": contract.retry.max_retries,
                "max_retries_limit": contract.retry.max_retries_limit,
                "min_backoff_seconds": contract.retry.min_backoff,
                "max_backoff_seconds": contract.retry.max_backoff,
            },
            "payload_schema": contract.json_schema(),
        }
        for contract in services().registry.public
    ]
    return jsonify({"job_types": items})


@bp.get("/openapi.json")
@documented(
    Operation(
        "This document (OpenAPI 3.1)",
        description="This OpenAPI 3.1 document, generated from the API's routes and its job types' contracts.",
        tag="meta",
        public=True,
        responses={200: ("The document.", {"application/json": {"type": "object"}})},
    )
)
def openapi() -> Response:
    """The OpenAPI 3.1 document, generated from the routes and the contract registry."""
    return jsonify(document())


@bp.get("/docs")
@documented(
    Operation(
        "Human-readable API reference",
        description="An HTML reference rendered from this document, self-contained (no external scripts).",
        tag="meta",
        public=True,
        responses={200: ("An HTML page.", HTML_PAGE)},
    )
)
def docs() -> Response:
    """An HTML reference rendered from the OpenAPI document (no external scripts)."""
    return Response(render_docs(document()), mimetype="text/html")


def document() -> dict[str, object]:
    """The OpenAPI document, built once per process."""
    found = services()
    if found.openapi is None:
        server_url = found.settings.public_url.rstrip("/") or "/"
        found.openapi = build_openapi(current_app, found.registry, server_url=server_url)
    return found.openapi
