"""Per-view OpenAPI facts, attached by decorator so that the document is generated from the routes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Operation:
    """What the OpenAPI document says about one view.

    Args:
        summary: one line.
        responses: status → (description, schema name or None).
        request: the request body's schema name, if any (a JSON body).
        request_content: a body that is not JSON: media type → schema (uploads).
        query: query parameters as ``(name, schema, description)``.
        headers: request headers as ``(name, schema, description)``.
        tag: the group in the docs.
    """

    summary: str
    responses: dict[int, tuple[str, str | None]]
    request: str | None = None
    request_content: dict[str, dict[str, Any]] | None = None
    query: tuple[tuple[str, dict[str, Any], str], ...] = ()
    headers: tuple[tuple[str, dict[str, Any], str], ...] = ()
    tag: str = "jobs"
    stream: bool = False
    public: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def documented(operation: Operation) -> Callable[[F], F]:
    """Attach ``operation`` to a view for :mod:`offload_api.openapi`."""

    def decorate(view: F) -> F:
        view.openapi = operation  # type: ignore[attr-defined]
        return view

    return decorate
