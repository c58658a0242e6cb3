"""``/healthz`` (the process answers) and ``/readyz`` (Redis and RabbitMQ answer too)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from flask import Blueprint, Response, jsonify

from offload.errors import DependencyError
from offload_api.extension import services
from offload_api.openapi_meta import Operation, documented

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@documented(
    Operation(
        "Liveness: the process answers",
        description="200 as long as the process answers (a liveness probe).",
        tag="health",
        public=True,
        responses={200: ("Alive.", "Health")},
    )
)
def healthz() -> Response:
    """Always 200 while the process can answer."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@documented(
    Operation(
        "Readiness: Redis and RabbitMQ are reachable",
        description=(
            "200 when Redis answers a PING and RabbitMQ accepts a connection; 503 naming the one that does not (a "
            "readiness probe)."
        ),
        tag="health",
        public=True,
        responses={
            200: ("Ready.", "Readiness"),
            503: ("A dependency is down: its check says unavailable.", "Readiness"),
        },
    )
)
def readyz() -> tuple[Response, int]:
    """200 when Redis answers a PING and RabbitMQ accepts a TCP connection; 503 naming what is down."""
    found = services()
    checks = {"redis": "ok", "broker": "ok"}
    try:
        found.store.ping()
    except DependencyError:
        checks["redis"] = "unavailable"
    if not _broker_reachable(found.settings.broker_url.get_secret_value()):
        checks["broker"] = "unavailable"
    ready = all(value == "ok" for value in checks.values())
    return jsonify({"status": "ok" if ready else "unavailable", "checks": checks}), 200 if ready else 503


def _broker_reachable(url: str, timeout: float = 1.0) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=timeout):
            return True
    except OSError:
        return False
