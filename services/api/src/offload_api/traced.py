"""The API's side of a job's trace: a server span around each submission, continuing the caller's.

``@submit_span`` wraps the views that submit work (``POST /v1/jobs``, ``/v1/batches``,
``/v1/flows``). While tracing is off (``offload.tracing``) it calls the view straight through.
On, the span ``offload.submit`` continues the request's W3C ``traceparent``/``tracestate`` headers
(a malformed one is ignored and a new trace starts; never an error), and the publish spans and the
jobs' records and messages made inside it carry its trace on to the workers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import request

from offload import tracing

P = ParamSpec("P")
R = TypeVar("R")


def submit_span(view: Callable[P, R]) -> Callable[P, R]:
    """``view`` inside an ``offload.submit`` server span when tracing is on; ``view`` itself otherwise."""

    @functools.wraps(view)
    def traced(*args: P.args, **kwargs: P.kwargs) -> R:
        if not tracing.enabled():
            return view(*args, **kwargs)
        route = request.url_rule.rule if request.url_rule is not None else request.path
        attributes = {"http.request.method": request.method, "http.route": route}
        with tracing.server_span("offload.submit", request.headers, attributes) as current:
            answer = view(*args, **kwargs)
            if current is not None and isinstance(answer, tuple) and len(answer) > 1 and isinstance(answer[1], int):
                current.set_attribute("http.response.status_code", answer[1])
            return answer

    return traced
