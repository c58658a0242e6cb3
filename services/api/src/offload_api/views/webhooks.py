"""``/v1/webhooks/secret``: the key clients verify our signed callbacks with."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from offload.status import redis_errors
from offload.status.secrets import ROTATION_OVERLAP, SecretStore
from offload_api.auth import caller, requires
from offload_api.extension import services
from offload_api.openapi_meta import Operation, documented

bp = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks")

_ERRORS = {
    401: ("Missing or invalid API key.", "Error"),
    403: ("The key may not do this.", "Error"),
    503: ("Redis unavailable.", "Error"),
}


def _secrets() -> SecretStore:
    found = services()
    return SecretStore(found.store)


@bp.get("/secret")
@requires("client")
@documented(
    Operation(
        "Get the webhook signing secret of your tenant",
        description=(
            "The secret your tenant's webhook deliveries are signed with (Standard Webhooks: see this document's "
            "`webhooks`), created on first use. Verify each delivery with it."
        ),
        tag="webhooks",
        responses={200: ("The current secret (whsec_...), created on first use.", "WebhookSecret"), **_ERRORS},
    )
)
def get_secret() -> Response:
    """The secret deliveries to your callback URLs are signed with (Standard Webhooks)."""
    with redis_errors():
        return jsonify({"secret": _secrets().current(caller().tenant), "rotation_overlap_seconds": ROTATION_OVERLAP})


@bp.post("/secret/rotate")
@requires("client")
@documented(
    Operation(
        "Rotate the webhook signing secret",
        description=(
            "Makes a new secret. The old one keeps signing deliveries beside it for `rotation_overlap_seconds`, so "
            "a receiver can switch to the new one without refusing a delivery."
        ),
        tag="webhooks",
        responses={200: ("The new secret; the old one keeps signing beside it for a day.", "WebhookSecret"), **_ERRORS},
    )
)
def rotate_secret() -> Response:
    """Make a new secret; deliveries carry signatures by both for ``rotation_overlap_seconds``."""
    with redis_errors():
        return jsonify({"secret": _secrets().rotate(caller().tenant), "rotation_overlap_seconds": ROTATION_OVERLAP})
