"""Reading request bodies strictly: JSON only, size-limited before parsing, no NaN, no deep nesting."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from flask import request
from pydantic import BaseModel
from werkzeug.exceptions import RequestEntityTooLarge

from offload import problems
from offload.errors import InvalidJson, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from offload.numbers import whole_number
from offload.submission import parse_object

M = TypeVar("M", bound=BaseModel)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _read_limited(limit: int | None) -> bytes:
    """The raw body, refusing more than ``limit`` bytes whether or not a Content-Length was sent.

    Werkzeug silently truncates a chunked body at the limit, which would surface as bad JSON; here
    a chunked body is read up to one byte past the limit so that it gets its 413 like any other.
    """
    too_large = PayloadTooLarge("The request body is larger than the limit.")
    if limit is None or request.content_length is not None:
        try:
            return request.get_data(cache=True)
        except RequestEntityTooLarge:
            raise too_large from None
    stream = request.environ["wsgi.input"]
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(65536, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise too_large
    return b"".join(chunks)


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
    raw = _read_limited(request.max_content_length)
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise InvalidJson("The JSON body nests too deeply.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJson(f"The body is not valid JSON: {str(exc)[:120]}.") from None


def model_body(model: type[M]) -> M:
    """The request's JSON document validated by ``model``.

    Raises:
        UnsupportedMediaType, PayloadTooLarge, InvalidJson: as :func:`json_body`.
        ValidationFailed: the document does not fit ``model``; ``errors`` names each field.
    """
    return parse_object(model, json_body(), what=model.__name__)


def query_int(name: str, raw: str | None, *, low: int, high: int, default: int) -> int:
    """A whole-number query parameter in ``[low, high]``, ``default`` when absent.

    Raises:
        ValidationFailed: it is not a whole number in range (the 422 names the parameter).
    """
    if raw is None:
        return default
    value = whole_number(raw)
    if value is None or not low <= value <= high:
        problem = f"an integer from {low} to {high}"
        raise ValidationFailed(f"{name} must be {problem}.", errors=[problems.parameter(name, "range", problem)])
    return value
