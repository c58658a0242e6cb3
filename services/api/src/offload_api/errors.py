"""Every error the API answers with, as JSON: ``{"error": code, "detail": text}``, mapped in one place.

Offload's taxonomy maps to statuses here: client errors to their 4xx, dependency errors to 503
with ``Retry-After``, anything unexpected to a generic 500 with a request id (details only in
logs). No response ever carries a stack trace, a URL with credentials or a secret.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from offload.errors import ClientError, DependencyError, OffloadError, ValidationFailed

logger = logging.getLogger(__name__)

#: Codes for werkzeug's own HTTP errors.
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def error_response(status: int, code: str, detail: str, **extra: Any) -> Response:
    """A JSON error response."""
    response = jsonify({"error": code, "detail": detail, **extra})
    response.status_code = status
    return response


def _client_error(exc: ClientError) -> Response:
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationFailed) and exc.errors:
        extra["errors"] = exc.errors
    if "job_id" in exc.context and exc.status == 409:
        extra["job_id"] = exc.context["job_id"]
    if "job_type" in exc.context and exc.status == 403:
        extra["job_type"] = exc.context["job_type"]  # a key's scopes refused it
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        extra["retry_after"] = retry_after
    response = error_response(exc.status, exc.code, exc.message, **extra)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="offload"'
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def _dependency_error(exc: DependencyError) -> Response:
    logger.warning(
        "Answering 503: %s", exc.message, exc_info=exc.__cause__ is not None and logger.isEnabledFor(logging.DEBUG)
    )
    response = error_response(503, exc.code, exc.message, retry_after=exc.retry_after)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = _HTTP_CODES.get(status, "http_error")
    detail = {
        404: "No such resource.",
        405: f"Method {request.method} is not allowed here.",
        413: "The request body is larger than the limit.",
    }.get(status, exc.description or "HTTP error.")
    response = error_response(status, code, detail)
    if status == 405 and exc.response is None:
        allowed = getattr(exc, "valid_methods", None)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
    return response


def _unexpected(exc: Exception) -> Response:
    request_id = uuid.uuid4().hex
    logger.exception("Unhandled error (request %s).", request_id, exc_info=exc)
    return error_response(500, "internal_error", "An internal error occurred.", request_id=request_id)


def _offload_error(exc: OffloadError) -> Response:
    if isinstance(exc, ClientError):
        return _client_error(exc)
    if isinstance(exc, DependencyError):
        return _dependency_error(exc)
    return _unexpected(exc)


def register_error_handlers(app: Flask) -> None:
    """Install the JSON error handlers on ``app``."""
    app.register_error_handler(OffloadError, _offload_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
