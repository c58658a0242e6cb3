"""The registry and the API described: ``/v1/job-types``, ``/openapi.json`` and ``/docs``."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from offload.catalogue import Catalogue
from offload.contracts import Registry
from offload.contracts.registered import RegisteredContract
from offload.errors import StatusStoreUnavailable
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
    """Every job type clients may submit: queue, limits, retry policy, payload JSON Schema, and who serves it."""
    registry = services().registry
    public = registry.public
    cards, live = catalogue_facts(registry, [contract.name for contract in public])
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
            "service": cards.get(contract.name, {}).get("service"),
            "schema_hash": cards.get(contract.name, {}).get("schema_hash"),
            "live_workers": live.get(contract.name) if live is not None else None,
            "validated_by": "json_schema" if isinstance(contract, RegisteredContract) else "model",
        }
        for contract in public
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


def catalogue_facts(registry: Registry, names: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, int] | None]:
    """The registered cards of ``names`` and their live worker counts (None if Redis cannot say).

    The job-types list and the admin page's Job types tab both show these.
    """
    if not isinstance(registry, Catalogue):
        return {}, None
    cards = {name: found for name in names if (found := registry.card(name)) is not None}
    try:
        return cards, registry.store.live_workers(names)
    except StatusStoreUnavailable:
        return cards, None


def document() -> dict[str, object]:
    """The OpenAPI document, built again only when the catalogue's version changes."""
    found = services()
    version = found.registry.version if isinstance(found.registry, Catalogue) else 0
    if found.openapi is None or found.openapi_version != version:
        server_url = found.settings.public_url.rstrip("/") or "/"
        found.openapi = build_openapi(current_app, found.registry, server_url=server_url)
        found.openapi_version = version
    return found.openapi
