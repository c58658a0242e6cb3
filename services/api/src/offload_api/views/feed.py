"""``GET /v1/events``: a tenant's job changes as Server-Sent Events (an admin's: every tenant's).

Every change the status store's scripts make (a state change, progress, a cancel request) is in
its tenant's feed (``offload.status.feeds``), written by the script that made it. The stream
sends the feed's changes that pass the filters (``queue``, ``type``, ``tag``, ``state``), each
with its feed entry's id. A client that reconnects with ``Last-Event-ID`` gets every change after
it that is still in the feed (about the last 10,000 of its tenant): nothing between its last event
and the reconnect is missed. One resuming from further back, or reading so slowly that it is more
than ``OFFLOAD_EVENTS_MAX_LAG`` seconds behind, is cut with an ``overflow`` event, whose id is the
feed's newest: it should read what it missed with ``GET /v1/jobs`` and go on from there. A slow
client only ever holds its own stream (each waits on its own socket and Redis read), and a small
send buffer makes its lag show early. Quiet streams get keep-alive comments.

The lag is the API's clock against the change's feed id (Redis's clock): hosts whose clocks differ
by more than a few seconds need a larger ``OFFLOAD_EVENTS_MAX_LAG``.

An admin's stream follows every tenant's feed at once; its ids come from the tenants' feeds, so a
resume from one is applied to all (a change of another tenant written in the same millisecond as
the last one seen may be missed).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, request, stream_with_context

from offload import problems
from offload.errors import DependencyError, ValidationFailed
from offload.status import JobState, iso, now_ms
from offload.status.feeds import Change, entry_id
from offload_api.auth import Caller, caller
from offload_api.browser import TOKEN_PARAMETER, readable_with_token
from offload_api.extension import Services, services
from offload_api.openapi_meta import Event, EventStream, Operation, documented
from offload_api.schemas import FEED_EVENTS, Error
from offload_api.sse import MAX_STREAM_SECONDS, close_stream, open_stream
from offload_api.views.jobs import tag_filter

logger = logging.getLogger(__name__)

bp = Blueprint("feed", __name__, url_prefix="/v1/events")

#: Changes read from a feed at a time.
BATCH = 200
#: Bytes of a stream's socket send buffer: what a client that stops reading can leave unsent
#: before its stream waits (and its lag starts to show), instead of the megabytes the kernel
#: would otherwise let a connection queue.
SEND_BUFFER = 64 * 1024
#: Seconds between looks for tenants new since an admin's stream opened.
TENANTS_REFRESH = 10.0
#: The longest ``queue`` or ``type`` filter.
_MAX_NAME = 100

STREAM = EventStream(
    "TenantEvent",
    (
        *(Event(name, model.__name__) for name, model in FEED_EVENTS.items()),
        Event("overflow", Error.__name__),
        Event("error", Error.__name__, with_id=False),
    ),
    id_description="The change's id in its tenant's feed: resume after it with Last-Event-ID.",
    id_pattern="^[0-9]+-[0-9]+$",
)


@dataclass(frozen=True)
class Filters:
    """What a stream sends: the changes matching every filter given."""

    queue: str | None
    type: str | None
    tag: str | None
    state: str | None

    def match(self, change: Change) -> bool:
        """Whether ``change`` passes."""
        return (
            (self.queue is None or change.queue == self.queue)
            and (self.type is None or change.type == self.type)
            and (self.tag is None or self.tag in change.tags)
            and (self.state is None or change.event.get("state") == self.state)
        )


def _scope() -> str:
    """What a browser token must open to read this stream: the tag asked for, else the tenant's whole feed."""
    tag = request.args.get("tag")
    return f"tag:{tag}" if tag else "tenant"


@bp.get("")
@readable_with_token(_scope)
@documented(
    Operation(
        "Follow the job changes of a tenant (Server-Sent Events)",
        description=(
            "Every change of the caller's jobs (an admin's: every tenant's) as it happens: `state`, `progress` and "
            "`cancel_requested` events, each with the job's id, type, queue and tags, filtered by `queue`, `type`, "
            "`tag` and `state` (all given must match). Each event's id is its place in the tenant's feed: a client "
            "that reconnects with `Last-Event-ID` gets every change since, while it is among the feed's last "
            "~10,000. A client resuming from further back, or more than `OFFLOAD_EVENTS_MAX_LAG` seconds behind "
            "because it reads too slowly, gets an `overflow` event and the stream ends: read the jobs with "
            "`GET /v1/jobs` and reconnect (the overflow's id resumes from then). Quiet streams get keep-alive "
            "comments. Readable with a browser token (`?token=`) of the tenant or of the `tag` asked for."
        ),
        stream=STREAM,
        query=(
            ("queue", {"type": "string", "maxLength": _MAX_NAME}, "Only jobs of this queue."),
            ("type", {"type": "string", "maxLength": _MAX_NAME}, "Only jobs of this type."),
            ("tag", {"type": "string", "pattern": "^[A-Za-z0-9_.:/-]{1,64}$"}, "Only jobs carrying this tag."),
            ("state", {"type": "string", "enum": [s.value for s in JobState]}, "Only changes into this state."),
            TOKEN_PARAMETER,
        ),
        headers=(("Last-Event-ID", {"type": "string"}, "Resume after this event id."),),
        responses={
            200: (
                "An event stream of the tenant's job changes (state, progress, cancel_requested), each with its "
                "feed id; it ends with an overflow event when the client is too far behind, or an error event if "
                "the stream fails. The schema describes one event (OpenAPI 3.2's itemSchema).",
                None,
            ),
            401: ("Missing or invalid API key or token.", "Error"),
            403: ("The token does not open this stream (another tag).", "Error"),
            422: ("Bad filter or Last-Event-ID.", "Error"),
            503: ("Too many open streams, or Redis unavailable.", "Error"),
        },
    )
)
def tenant_events() -> Response:
    """Stream the changes of the caller's jobs that pass the filters, from ``Last-Event-ID`` or from now."""
    filters = _filters()
    after = _last_event_id()
    found = services()
    who = caller()
    feeds = found.store.feeds
    tenants = feeds.tenants() if who.is_admin else [who.tenant]
    positions = dict.fromkeys(tenants, after) if after else feeds.latest(tenants)
    behind = after is not None and feeds.missed(positions)
    open_stream(found, who.tenant)
    _small_send_buffer(request.environ)
    stream = _stream(found, who, filters, positions, behind=behind)
    return Response(
        stream_with_context(stream),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _stream(
    found: Services, who: Caller, filters: Filters, positions: dict[str, str], *, behind: bool
) -> Iterator[str]:
    feeds = found.store.feeds
    settings = found.settings
    max_lag_ms = settings.events_max_lag * 1000
    try:
        yield "retry: 2000\n\n"
        if behind:
            yield _overflow(found, positions, "Events after Last-Event-ID have left the feed (it keeps ~10,000).")
            return
        opened = now_ms()
        deadline = time.monotonic() + MAX_STREAM_SECONDS
        quiet_since = refreshed = time.monotonic()
        while time.monotonic() < deadline:
            if who.is_admin and time.monotonic() - refreshed > TENANTS_REFRESH:
                refreshed = time.monotonic()
                for tenant, position in feeds.latest([t for t in feeds.tenants() if t not in positions]).items():
                    positions[tenant] = position
            changes = feeds.read(positions, count=BATCH, block_ms=int(settings.sse_keepalive * 1000))
            for change in changes:
                positions[change.tenant] = change.id
                if change.written_ms > opened and now_ms() - change.written_ms > max_lag_ms:
                    yield _overflow(found, positions, "The client read too slowly; it fell behind the feed.")
                    return
                if filters.match(change):
                    quiet_since = time.monotonic()
                    yield _format(change)
            if len(changes) >= BATCH and feeds.missed(positions):
                yield _overflow(found, positions, "The client fell behind by more than the feed keeps.")
                return
            if time.monotonic() - quiet_since >= settings.sse_keepalive:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
    except DependencyError as exc:
        yield f"event: error\ndata: {json.dumps({'error': exc.code, 'detail': exc.message})}\n\n"
    except Exception:
        logger.exception("The event stream of tenant %s failed.", who.tenant)
        yield 'event: error\ndata: {"error": "internal_error", "detail": "The event stream failed."}\n\n'
    finally:
        close_stream(found, who.tenant)


def _format(change: Change) -> str:
    data: dict[str, Any] = {
        "job_id": change.job_id,
        "tenant": change.tenant,
        "type": change.type,
        "queue": change.queue,
        "tags": change.tags,
        **change.event,
    }
    data["at"] = iso(change.event.get("at"))
    return f"id: {change.id}\nevent: {change.event.get('kind', 'state')}\ndata: {json.dumps(data)}\n\n"


def _overflow(found: Services, positions: dict[str, str], detail: str) -> str:
    """The last event of a stream whose client is too far behind: its id resumes from the feed's newest change."""
    newest = max(found.store.feeds.latest(list(positions)).values(), key=lambda i: entry_id(i) or (0, 0))
    return f"id: {newest}\nevent: overflow\ndata: {json.dumps({'error': 'overflow', 'detail': detail})}\n\n"


def _filters() -> Filters:
    """The stream's filters, checked.

    Raises:
        ValidationFailed: a filter is malformed (a state that is none, a tag that cannot be one, a name too long).
    """
    args = request.args
    for name in ("queue", "type"):
        if len(args.get(name) or "") > _MAX_NAME:
            raise ValidationFailed(
                f"{name} must be at most {_MAX_NAME} characters.",
                errors=[problems.parameter(name, "string_too_long", f"at most {_MAX_NAME} characters")],
            )
    state = args.get("state") or None
    if state is not None and state not in {s.value for s in JobState}:
        raise ValidationFailed(
            f"Unknown state {state[:32]!r}.",
            errors=[problems.parameter("state", "enum", f"one of {[s.value for s in JobState]}")],
        )
    return Filters(args.get("queue") or None, args.get("type") or None, tag_filter(args.get("tag")), state)


def _last_event_id() -> str | None:
    """``Last-Event-ID`` (or ``last_event_id``): a feed id to resume after, or None to start from now.

    Raises:
        ValidationFailed: it is not a feed id (``<ms>-<n>``).
    """
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if not raw:
        return None
    found = entry_id(raw)
    if found is None:
        raise ValidationFailed(
            "Last-Event-ID must be an event id this stream sent (<ms>-<n>).",
            errors=[problems.parameter("Last-Event-ID", "string_pattern_mismatch", "not an id of this stream")],
        )
    return f"{found[0]}-{found[1]}"


def _small_send_buffer(environ: dict[str, Any]) -> None:
    """Shrink the stream's socket send buffer to :data:`SEND_BUFFER` (gunicorn's socket; other servers: as is)."""
    sock = environ.get("gunicorn.socket")
    if isinstance(sock, socket.socket):
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            logger.debug("Could not shrink an event stream's send buffer.", exc_info=True)
