"""``GET /v1/audit``: the audit log of admin actions, newest first, a page at a time (admins)."""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, Response, jsonify, request

from offload import problems
from offload.errors import ValidationFailed
from offload.status.audit import MAX_PAGE
from offload_api.auth import requires
from offload_api.bodies import query_int
from offload_api.extension import services
from offload_api.openapi_meta import Operation, documented

bp = Blueprint("audit", __name__, url_prefix="/v1/audit")


@bp.get("")
@requires("admin")
@documented(
    Operation(
        "Read the audit log",
        description=(
            "Admin actions, newest first: who (the key, or the admin page's session), what (`action`, `target`, "
            "`outcome`), when and from which address. Key changes, queue and type pauses, bulk operations, schedule "
            "changes, dead-letter requeues and purges, job cancels and retries by an admin, admin sign-ins. Kept "
            "`OFFLOAD_AUDIT_RETENTION` seconds, at most `OFFLOAD_AUDIT_MAX_ENTRIES` entries. A page may hold fewer "
            "than `limit` while `next_cursor` is given."
        ),
        tag="keys",
        query=(
            (
                "action",
                {"type": "string", "maxLength": 100},
                "Only this action (ending in `.`: a prefix).",
            ),
            (
                "since",
                {"type": "string", "format": "date-time"},
                "Only entries at or after this time.",
            ),
            ("cursor", {"type": "string", "maxLength": 40}, "The `next_cursor` of the previous page."),
            ("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50}, "Entries per page."),
        ),
        responses={
            200: ("A page of entries.", "AuditPage"),
            401: ("Missing or invalid API key.", "Error"),
            403: ("Not an admin key.", "Error"),
            422: ("A query parameter is invalid; `errors` names it.", "Error"),
            503: ("Redis unavailable; retry later.", "Error"),
        },
    )
)
def read_audit() -> Response:
    """A page of the audit log."""
    log = services().audit
    assert log is not None, "the app always has an audit log"
    action = request.args.get("action") or None
    if action is not None and len(action) > 100:
        raise _invalid("action", "string_too_long", "at most 100 characters")
    try:
        entries, cursor = log.page(
            action=action,
            since=_since(request.args.get("since")),
            cursor=request.args.get("cursor") or None,
            limit=query_int("limit", request.args.get("limit"), low=1, high=MAX_PAGE, default=50),
        )
    except ValueError:
        raise _invalid("cursor", "cursor", "the next_cursor of a previous page") from None
    return jsonify({"entries": [entry.public() for entry in entries], "next_cursor": cursor})


def _since(raw: str | None) -> int | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _invalid("since", "datetime_parsing", "an ISO 8601 time with an offset")
    return max(0, int(moment.timestamp() * 1000))


def _invalid(name: str, rule: str, problem: str) -> ValidationFailed:
    return ValidationFailed(f"{name} must be {problem}.", errors=[problems.parameter(name, rule, problem)])
