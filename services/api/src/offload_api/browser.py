"""Browser access: read-only tokens (``?token=``) on the few routes a web page follows, and CORS for exactly those.

A browser's ``EventSource`` sends no ``Authorization`` header, and a web page must never hold an API
key. So a client with a key asks for a token (``POST /v1/jobs/{id}/token``, ``POST /v1/events/token``,
or ``"token": true`` in a submission) and hands it to its page, which passes it as ``?token=``:

* a job's token (scope ``job:<id>``) reads that job's status and events, nothing else;
* a flow's token (``flow:<id>``) reads that flow's status and events (not its jobs');
* a tag's token (``tag:<tag>``) reads ``GET /v1/events?tag=<tag>`` of its tenant;
* a tenant's token (``tenant``) reads ``GET /v1/events`` of its tenant, with any filters.

Every token is read-only, signed (``offload.signing.ReadTokens``) and expires. A ``token`` on any
other route is refused (401 ``token_not_accepted``), never silently ignored. The routes a token
opens (views decorated with :func:`readable_with_token`) answer CORS for the origins in
``OFFLOAD_CORS_ORIGINS`` (preflight included: an ``EventSource`` reconnecting sends
``Last-Event-ID``); no other route answers CORS at all. Gunicorn's access log, when one is turned
on, drops the token from the lines it writes (``offload_api.access_log``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Response, g, request

from offload.errors import Unauthorized
from offload.settings import Settings
from offload.status import iso
from offload_api.auth import Caller, requires
from offload_api.errors import error_response
from offload_api.extension import services

F = TypeVar("F", bound=Callable[..., Any])

#: The ``token`` query parameter as the OpenAPI document lists it on the routes that take it.
TOKEN_PARAMETER = (
    "token",
    {"type": "string", "maxLength": 1024},
    "A browser token instead of an API key (read-only, short-lived, scoped): see POST /v1/jobs/{job_id}/token.",
)
#: The request headers a page's cross-origin reads may send (an ``EventSource`` reconnecting: ``Last-Event-ID``).
CORS_HEADERS = frozenset({"last-event-id", "cache-control", "accept"})
#: Seconds a browser may keep a preflight's answer.
CORS_MAX_AGE = 600


def issue_token(tenant: str, scope: str, ttl: int) -> dict[str, str]:
    """A signed read-only token of ``tenant`` opening ``scope`` for ``ttl`` seconds (its text and expiry)."""
    tokens = services().tokens
    token = tokens.issue(tenant, scope, ttl=ttl)
    return {"token": tokens.encode(token), "token_expires_at": str(iso(token.expires * 1000))}


def readable_with_token(scope: Callable[..., str]) -> Callable[[F], F]:
    """Let a read view be called with an API key (role ``reader``) or with a browser token opening ``scope``.

    ``scope(**view_args)`` names what the request reads (``job:<id>``, ``flow:<id>``, ``tag:<tag>``, ``tenant``);
    a token for anything else is a 403 ``token_scope``. A token's caller is a reader of its tenant.
    """

    def decorate(view: F) -> F:
        keyed = requires("reader")(view)

        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            raw = request.args.get("token")
            if raw is None:
                return keyed(*args, **kwargs)
            token = services().tokens.check(raw, scope(**kwargs))
            g.caller = Caller(token.tenant, "reader")
            return view(*args, **kwargs)

        guarded.required_role = "reader"  # type: ignore[attr-defined]
        guarded.reads_with_token = True  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return decorate


def install(app: Flask, settings: Settings) -> None:
    """Refuse tokens where they do not apply, answer preflights and add CORS headers on the token routes."""
    origins = frozenset(settings.cors_origins)

    def opens_to_browsers() -> bool:
        return bool(getattr(app.view_functions.get(request.endpoint or ""), "reads_with_token", False))

    @app.before_request
    def _gate() -> Response | None:
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers and opens_to_browsers():
            return _preflight(origins)
        if "token" in request.args and not opens_to_browsers():
            raise Unauthorized(
                "A browser token is accepted only on a job's status and events URLs and on GET /v1/events; "
                "use an API key here.",
                code="token_not_accepted",
            )
        return None

    @app.after_request
    def _allow_origin(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin in origins and request.method in ("GET", "HEAD") and opens_to_browsers():
            response.headers["Access-Control-Allow-Origin"] = origin
            response.vary.add("Origin")
        return response


def _preflight(origins: frozenset[str]) -> Response:
    """The answer to a CORS preflight of a token route: 204 with the grants, or 403 naming what is refused."""
    origin = request.headers.get("Origin", "")
    method = request.headers.get("Access-Control-Request-Method", "")
    asked = {h.strip().lower() for h in request.headers.get("Access-Control-Request-Headers", "").split(",")} - {""}
    if origin not in origins:
        return error_response(
            403, "cors_origin_not_allowed", "This origin may not read the API from a browser (OFFLOAD_CORS_ORIGINS)."
        )
    if method != "GET":
        return error_response(403, "cors_method_not_allowed", "Browsers may only GET this route.")
    if not asked <= CORS_HEADERS:
        refused = ", ".join(sorted(asked - CORS_HEADERS))[:200]
        return error_response(403, "cors_header_not_allowed", f"These request headers are not allowed: {refused}.")
    response = Response(status=204)
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Methods"] = "GET"
    response.headers["Access-Control-Allow-Headers"] = "Last-Event-ID, Cache-Control, Accept"
    response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE)
    response.vary.add("Origin")
    return response
