"""``/v1/keys``: managed API keys, made, listed, rotated and revoked by admins (issue 23).

A key's secret is answered once, by the create and by each rotation, and never stored (only its
SHA-256 is). A change takes effect on this process at once and on every other API process within
about a second (:mod:`offload_api.key_ring`). Keys of ``OFFLOAD_API_KEYS`` are not listed here and
cannot be revoked here: they live in the environment. Each change is in the audit log.
"""

from __future__ import annotations

from typing import TypeVar

from flask import Blueprint, Response, jsonify, request

from offload.api_keys import DEFAULT_OVERLAP, MAX_OVERLAP, ApiKeyRequest
from offload.errors import NotFound
from offload.status.api_keys import ApiKeyStore
from offload_api import audit
from offload_api.auth import requires
from offload_api.bodies import model_body, query_int
from offload_api.extension import services
from offload_api.openapi_meta import JSON_BODY_ERRORS, Operation, documented

bp = Blueprint("keys", __name__, url_prefix="/v1/keys")

T = TypeVar("T")

_ERRORS: dict[int, tuple[str, str | None]] = {
    401: ("Missing or invalid API key.", "Error"),
    403: ("Not an admin key.", "Error"),
    503: ("Redis unavailable; retry later.", "Error"),
}
_ONE_ERRORS: dict[int, tuple[str, str | None]] = {404: ("No such key.", "Error"), **_ERRORS}


def _store() -> ApiKeyStore:
    return ApiKeyStore(services().store)


def _changed() -> None:
    """Take a change into this process's keys now (the others see it within a second)."""
    ring = services().key_ring
    if ring is not None:
        ring.refresh(force=True)


def _found(key_id: str, outcome: T | None, action: str) -> T:
    """``outcome`` of ``action`` on the key; a 404 (audited) when there is no such key."""
    if outcome is None:
        audit.admin_action(action, key_id[:64], "not_found")
        raise NotFound(f"No API key {key_id[:64]!r}.")
    return outcome


@bp.post("")
@requires("admin")
@documented(
    Operation(
        "Make an API key",
        description=(
            "Makes a key for a tenant with a role (`reader`, `client`, `admin`), optionally limited to some job "
            "types (`scopes`, globs such as `email.*`: a submission of another type is a 403 naming it) and an "
            "expiry. The answer holds the secret (`ofk_...`) this once: only its SHA-256 is kept. It works on "
            "every API process within seconds."
        ),
        tag="keys",
        request="ApiKeyRequest",
        responses={
            201: ("The key, with its secret (shown once).", "ApiKeyCreated"),
            **JSON_BODY_ERRORS,
            422: ("A field is invalid; `errors` names it.", "Error"),
            **_ERRORS,
        },
    )
)
def create_key() -> tuple[Response, int, dict[str, str]]:
    """Make a key; its secret is in this answer only."""
    wanted = model_body(ApiKeyRequest)
    key, secret = _store().create(wanted, by=audit.actor() or "unknown")
    _changed()
    audit.admin_action("key.create", key.id, f"ok: {key.name} ({key.tenant}, {key.role})")
    return jsonify({**key.public(), "secret": secret}), 201, {"Location": f"/v1/keys/{key.id}"}


@bp.get("")
@requires("admin")
@documented(
    Operation(
        "List the API keys",
        description="Every managed key, newest first, with when it was last used; never a secret. Revoked keys "
        "stay listed 90 days. Keys of OFFLOAD_API_KEYS are only counted.",
        tag="keys",
        responses={200: ("The keys.", "ApiKeyList"), **_ERRORS},
    )
)
def list_keys() -> Response:
    """Every managed key (no secrets)."""
    ring = services().key_ring
    env = ring.env_count if ring is not None else 0
    return jsonify({"keys": [key.public() for key in _store().all()], "env_keys": env})


@bp.get("/<key_id>")
@requires("admin")
@documented(
    Operation(
        "Show an API key",
        description="One managed key; never its secret.",
        tag="keys",
        responses={200: ("The key.", "ApiKeyInfo"), **_ONE_ERRORS},
    )
)
def get_key(key_id: str) -> Response:
    """One key (no secret)."""
    key = _store().get(key_id)
    if key is None:
        raise NotFound(f"No API key {key_id[:64]!r}.")
    return jsonify(key.public())


@bp.post("/<key_id>/rotate")
@requires("admin")
@documented(
    Operation(
        "Rotate an API key",
        description=(
            "Gives the key a new secret, answered this once. The old secret keeps working `overlap_seconds` "
            f"(default {DEFAULT_OVERLAP}, 0: it stops at once, at most {MAX_OVERLAP}), then stops; a secret from an "
            "earlier rotation stops at once."
        ),
        tag="keys",
        query=(
            (
                "overlap_seconds",
                {"type": "integer", "minimum": 0, "maximum": MAX_OVERLAP, "default": DEFAULT_OVERLAP},
                "Seconds the old secret keeps working.",
            ),
        ),
        responses={
            200: ("The key, with its new secret (shown once).", "ApiKeyCreated"),
            409: ("The key is revoked.", "Error"),
            422: ("`overlap_seconds` is not an integer in range.", "Error"),
            **_ONE_ERRORS,
        },
    )
)
def rotate_key(key_id: str) -> Response:
    """A new secret for the key; the old one works for the overlap."""
    overlap = query_int(
        "overlap_seconds", request.args.get("overlap_seconds"), low=0, high=MAX_OVERLAP, default=DEFAULT_OVERLAP
    )
    key, secret = _found(key_id, _store().rotate(key_id, overlap_seconds=overlap), "key.rotate")
    _changed()
    audit.admin_action("key.rotate", key.id, f"ok: old secret works {overlap} s more")
    return jsonify({**key.public(), "secret": secret})


@bp.delete("/<key_id>")
@requires("admin")
@documented(
    Operation(
        "Revoke an API key",
        description="The key (every secret of it) stops working on every API process within seconds; for good. "
        "Revoking a revoked key changes nothing.",
        tag="keys",
        responses={200: ("The key, revoked.", "ApiKeyInfo"), **_ONE_ERRORS},
    )
)
def revoke_key(key_id: str) -> Response:
    """Revoke the key for good."""
    key = _found(key_id, _store().revoke(key_id), "key.revoke")
    _changed()
    audit.admin_action("key.revoke", key.id, f"ok: {key.name}")
    return jsonify(key.public())
