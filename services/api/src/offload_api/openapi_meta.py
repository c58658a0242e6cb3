"""Per-view OpenAPI facts, attached by decorator so that the document is generated from the routes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: A body that is not one of our JSON schemas (an HTML page, a file): media type → its schema.
Content = dict[str, dict[str, Any]]
#: An HTML page, as the docs page and gunicorn's own error pages are.
HTML_PAGE: Content = {"text/html": {"type": "string"}}
#: What any view reading a JSON body (``offload_api.bodies.json_body``) answers to a bad one.
JSON_BODY_ERRORS: dict[int, tuple[str, str | Content | None]] = {
    400: ("Malformed JSON.", "Error"),
    413: ("Body too large.", "Error"),
    415: ("Not JSON.", "Error"),
}


@dataclass(frozen=True)
class Event:
    """One kind of event a ``text/event-stream`` response sends.

    Args:
        name: the SSE event name (its ``event:`` field).
        data: the schema name of its ``data``, one JSON document.
        with_id: whether it has an ``id:`` of its own (else a client keeps the last one it saw).
    """

    name: str
    data: str
    with_id: bool = True


@dataclass(frozen=True)
class EventStream:
    """A 200 response that is a stream of Server-Sent Events (``text/event-stream``).

    Args:
        name: the schema name to give one event of the stream (one per event name besides).
        events: every kind of event it sends.
        id_description: what an event's id is.
        id_pattern: the pattern every id matches.
    """

    name: str
    events: tuple[Event, ...]
    id_description: str
    id_pattern: str = "^[0-9]+$"


@dataclass(frozen=True)
class Link:
    """An OpenAPI link: an operation a response leads to, with where its path parameters come from.

    Args:
        endpoint: the target view's endpoint (``blueprint.view``).
        parameters: each path parameter's runtime expression, e.g. ``{"job_id": "$response.body#/id"}``.
        description: one line.
    """

    endpoint: str
    parameters: dict[str, str]
    description: str


@dataclass(frozen=True)
class Operation:
    """What the OpenAPI document says about one view.

    Args:
        summary: one line.
        description: what the operation does and promises, for the API's clients (CommonMark).
        responses: status → (description, body): the body is the name of its JSON schema, a
            :data:`Content` for any other, or None for none.
        request: the request body's schema name, if any (a JSON body).
        request_content: a body that is not JSON: media type → schema (uploads).
        query: query parameters as ``(name, schema, description)``.
        headers: request headers as ``(name, schema, description)``.
        tag: the group in the docs.
        stream: the 200 response is this event stream (instead of a JSON body).
        public: no API key needed.
        links: status → link name → :class:`Link`, the operations that response leads to.
    """

    summary: str
    responses: dict[int, tuple[str, str | Content | None]]
    request: str | None = None
    request_content: dict[str, dict[str, Any]] | None = None
    query: tuple[tuple[str, dict[str, Any], str], ...] = ()
    headers: tuple[tuple[str, dict[str, Any], str], ...] = ()
    tag: str = "jobs"
    stream: EventStream | None = None
    public: bool = False
    links: dict[int, dict[str, Link]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    description: str = field(kw_only=True)


def documented(operation: Operation) -> Callable[[F], F]:
    """Attach ``operation`` to a view for :mod:`offload_api.openapi`."""

    def decorate(view: F) -> F:
        view.openapi = operation  # type: ignore[attr-defined]
        return view

    return decorate
