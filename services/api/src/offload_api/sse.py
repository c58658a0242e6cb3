"""What every Server-Sent Events stream of the API shares: its slot, its subscription, its response, its end.

A stream holds a slot of the process's cap (``offload_api.streams``: each tenant's fair share)
and a Redis subscription for as long as it is open. :func:`event_stream` takes both, and gives
both back however the stream ends: a client that goes away, a failure (which ends the stream
with an ``error`` event, with no id), or the end of what it follows.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from flask import Response, stream_with_context

from offload.errors import DependencyError, ServiceBusy
from offload_api.extension import Services

logger = logging.getLogger(__name__)

#: Seconds a stream stays open at most; the client then reconnects.
MAX_STREAM_SECONDS = 3600
#: Milliseconds an ``EventSource`` waits before reconnecting to a stream whose subject has ended.
RETRY_AFTER_END_MS = 86_400_000
#: What a stream sends last when what it follows has ended.
END = f"retry: {RETRY_AFTER_END_MS}\n\n"


def event_stream(
    found: Services,
    tenant: str,
    subscribe: Callable[[], Any],
    events: Callable[[Any], Iterator[str]],
    *,
    subject: str,
) -> Response:
    """A ``text/event-stream`` response sending ``events(subscription)``, in a slot of ``tenant``'s.

    ``subscribe`` opens the Redis subscription (before anything is read, so no change is missed);
    ``subject`` names what is followed in the log of a stream that fails.

    Raises:
        ServiceBusy: the process is at its cap and ``tenant`` holds its share of it.
        redis.RedisError: the subscription could not be opened.
    """
    open_stream(found, tenant)
    try:
        pubsub = subscribe()
    except Exception:
        close_stream(found, tenant)
        raise
    return Response(
        stream_with_context(_guarded(found, tenant, pubsub, events(pubsub), subject)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _guarded(found: Services, tenant: str, pubsub: Any, events: Iterator[str], subject: str) -> Iterator[str]:
    try:
        yield from events
    except DependencyError as exc:
        yield f"event: error\ndata: {json.dumps({'error': exc.code, 'detail': exc.message})}\n\n"
    except Exception:
        logger.exception("Event stream of %s failed.", subject)
        yield 'event: error\ndata: {"error": "internal_error", "detail": "The event stream failed."}\n\n'
    finally:
        try:
            pubsub.close()
        finally:
            close_stream(found, tenant)


def open_stream(found: Services, tenant: str) -> None:
    """Take a stream slot for ``tenant`` (``offload_api.streams``: its share of the process's cap).

    Raises:
        ServiceBusy: the process is at its cap and ``tenant`` holds its share of it.
    """
    if not found.streams.take(tenant, found.settings.max_event_streams):
        raise ServiceBusy("Too many event streams are open; poll GET /v1/jobs/{id} (or /v1/flows/{id}) or retry later.")
    if found.metrics is not None:
        found.metrics.streams.inc()


def close_stream(found: Services, tenant: str) -> None:
    """Give back the slot :func:`open_stream` took."""
    found.streams.give_back(tenant)
    if found.metrics is not None:
        found.metrics.streams.dec()
