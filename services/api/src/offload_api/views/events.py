"""``GET /v1/jobs/{id}/events``: a job's changes as Server-Sent Events.

The stream replays the job's state history (or what follows ``Last-Event-ID``), then sends every
change as it happens: ``state`` events (the terminal one carries the whole job with its result),
``progress`` events, ``log`` events (lines the job's handler wrote to its log) and
``cancel_requested``. It closes after a terminal state. Event ids are the
job's ``seq``, so a client that reconnects with ``Last-Event-ID`` misses nothing and repeats nothing.

A stream of a job that has ended sends what follows ``Last-Event-ID`` (possibly nothing) and closes
at once, never idling for an hour on a connection slot. Every stream that closes because its job
ended says ``retry:`` :data:`offload_api.sse.RETRY_AFTER_END_MS` first: a browser's ``EventSource`` reconnects after
any close, and this keeps it from coming back every two seconds for nothing (when it does come
back, a day later, the job is gone or the stream closes again at once).

Each event's data is the status store's entry as published (see :data:`offload_api.schemas.JOB_EVENTS`),
with ``at`` made ISO 8601. A stream that fails ends with an ``error`` event, which has no id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, request

from offload.numbers import whole_number
from offload.status import JobState, StatusStore, iso
from offload_api.auth import caller
from offload_api.browser import TOKEN_PARAMETER, readable_with_token
from offload_api.extension import Services, services
from offload_api.openapi_meta import Event, EventStream, Operation, documented
from offload_api.schemas import JOB_EVENTS, Error
from offload_api.sse import END, MAX_STREAM_SECONDS, event_stream
from offload_api.views.jobs import find_job

bp = Blueprint("events", __name__, url_prefix="/v1/jobs")

_TERMINAL = {state.value for state in JobState if state.terminal}

#: What the document says the stream sends: the store's events and the stream's own ``error``.
STREAM = EventStream(
    "JobEvent",
    (
        *(Event(name, model.__name__) for name, model in JOB_EVENTS.items()),
        Event("error", Error.__name__, with_id=False),
    ),
    id_description="The job's seq: resume after it with Last-Event-ID.",
)


@bp.get("/<job_id>/events")
@readable_with_token(lambda job_id: f"job:{job_id}")
@documented(
    Operation(
        "Follow a job's changes (Server-Sent Events)",
        description=(
            "The job's history of state changes (or what follows `Last-Event-ID`), then each change as it happens: "
            "`state`, `progress`, `log` and `cancel_requested` events, until the job ends. Each event's id is the "
            "job's seq, so a client that reconnects with `Last-Event-ID` misses nothing and repeats nothing. A "
            "stream that fails ends with an `error` event. Readable with the job's browser token (`?token=`) "
            "instead of a key, from the origins in `OFFLOAD_CORS_ORIGINS`."
        ),
        stream=STREAM,
        query=(TOKEN_PARAMETER,),
        headers=(("Last-Event-ID", {"type": "string"}, "Resume after this event id (the job's seq)."),),
        responses={
            200: (
                "An event stream: state, progress, log and cancel_requested events, each with the job's seq as "
                "its id and a JSON document as its data. It ends after the job's terminal state event (at once if "
                "resumed at or past it), or with an error event if the stream fails. The schema describes one "
                "event (OpenAPI 3.2's itemSchema).",
                None,
            ),
            404: ("No such job.", "Error"),
            401: ("Missing or invalid API key.", "Error"),
            503: ("Too many open streams, or Redis unavailable.", "Error"),
        },
    )
)
def job_events(job_id: str) -> Response:
    """Stream the job's history and live changes until it ends."""
    find_job(job_id)
    found = services()
    after = _last_event_id()
    return event_stream(
        found,
        caller().tenant,
        lambda: found.store.queries.subscribe(job_id),
        lambda pubsub: _stream(found, job_id, after, pubsub),
        subject=f"job {job_id}",
    )


def _stream(found: Services, job_id: str, after: int, pubsub: Any) -> Iterator[str]:
    store = found.store
    yield "retry: 2000\n\n"
    sent = after
    events, ended = _replay(store, job_id, after)
    for event in events:
        sent = event["seq"]
        yield _format(store, job_id, event)
        if _is_terminal(event):
            yield END
            return
    if ended:  # its terminal event is at or before Last-Event-ID: nothing more will come
        yield END
        return
    keepalive = found.settings.sse_keepalive
    deadline = time.monotonic() + MAX_STREAM_SECONDS
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=keepalive)
        if message is None:
            if time.monotonic() - quiet_since >= keepalive:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
            continue
        quiet_since = time.monotonic()
        event = json.loads(message["data"])
        if event.get("seq", 0) > sent:
            sent = event["seq"]
            yield _format(store, job_id, event)
        if _is_terminal(event):
            yield END
            return  # even one the client said it had seen (a Last-Event-ID past it): nothing will follow


def _replay(store: StatusStore, job_id: str, after: int) -> tuple[list[dict[str, Any]], bool]:
    """The events after ``after``, and whether the job has ended.

    The events are the history entries and log lines after ``after``, plus the current progress if
    it is newer than the history.
    """
    # The record first, then the history: a state change between the two reads is then in the
    # history (and no older progress is sent after it). Read the other way round, a job that
    # started and reported progress in between had its `running` event skipped: the progress
    # event's newer seq made the stream drop the state event arriving on the channel.
    record = store.queries.get(job_id)
    events = [e for e in store.queries.history(job_id) if e["seq"] > after]
    events += [e for e in store.queries.logs(job_id) if e["seq"] > after]
    events.sort(key=lambda e: int(e["seq"]))
    last = events[-1]["seq"] if events else after
    if record is not None and record.seq > last and record.state is JobState.RUNNING:
        events.append(
            {
                "seq": record.seq,
                "kind": "progress",
                "state": "running",
                "at": record.updated_at,
                "attempt": record.attempts,
                "progress": record.progress,
                "message": record.progress_message,
            }
        )
    # Ended by what the client has or is sent now: a job that ended after its history was read
    # is not, and its terminal event arrives on the channel (subscribed to before this replay).
    return events, record is not None and record.state.terminal and record.seq <= max(last, after)


def _format(store: StatusStore, job_id: str, event: dict[str, Any]) -> str:
    data = dict(event)
    data["at"] = iso(event.get("at"))
    if _is_terminal(event):
        record = store.queries.get(job_id)
        if record is not None:
            data["job"] = record.public()
    return f"id: {event['seq']}\nevent: {event.get('kind', 'state')}\ndata: {json.dumps(data)}\n\n"


def _is_terminal(event: dict[str, Any]) -> bool:
    return event.get("kind") == "state" and event.get("state") in _TERMINAL


def _last_event_id() -> int:
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    return whole_number(raw) or 0  # not an id this stream sent: replay everything
