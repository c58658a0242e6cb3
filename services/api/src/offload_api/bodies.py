"""Reading request bodies strictly: JSON only, size-limited before parsing, no NaN, no deep nesting."""

from __future__ import annotations

import json
from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from offload.errors import ClientError


class UnsupportedMediaType(ClientError):
    """The body is not ``application/json``."""

    code = "unsupported_media_type"
    status = 415


class InvalidJson(ClientError):
    """The body is not valid JSON (or uses NaN/Infinity, or nests too deeply)."""

    code = "invalid_json"
    status = 400


class PayloadTooLarge(ClientError):
    """The body is over ``OFFLOAD_MAX_BODY_BYTES``."""

    code = "payload_too_large"
    status = 413


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def json_body() -> Any:
    """The request's JSON document.

    Raises:
        UnsupportedMediaType: the content type is not JSON.
        PayloadTooLarge: the body exceeds the limit (checked while reading, chunked bodies too).
        InvalidJson: the body does not parse.
    """
    mimetype = request.mimetype
    if mimetype != "application/json" and not (mimetype.startswith("application/") and mimetype.endswith("+json")):
        raise UnsupportedMediaType("Send the body as JSON with 'Content-Type: application/json'.")
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise PayloadTooLarge("The request body is larger than the limit.") from None
    limit = request.max_content_length
    if limit is not None and len(raw) > limit:
        raise PayloadTooLarge("The request body is larger than the limit.")
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise InvalidJson("The JSON body nests too deeply.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJson(f"The body is not valid JSON: {str(exc)[:120]}.") from None
