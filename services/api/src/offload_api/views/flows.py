"""``/v1/flows``: graphs of jobs in one request, followed, streamed and cancelled as one.

A flow's nodes are jobs (see :mod:`offload.flows` for the shape and the failure policies): each
is listed, read and followed at ``/v1/jobs`` like any other, and the flow's own routes here give
its aggregate state, a stream of its nodes' changes, and a cancel of what has not started.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify

from offload.errors import InvalidState, NotFound
from offload.flows import MAX_DEPTH, MAX_NODES
from offload.status import iso
from offload_api.auth import caller, check_scope, requires
from offload_api.bodies import json_body
from offload_api.browser import TOKEN_PARAMETER, readable_with_token
from offload_api.extension import Services, services
from offload_api.openapi_meta import Event, EventStream, Link, Operation, documented
from offload_api.sse import END, MAX_STREAM_SECONDS, event_stream
from offload_api.traced import submit_span
from offload_api.views.jobs import IDEMPOTENCY_KEY, idempotency_key, job_links, public_base

bp = Blueprint("flows", __name__, url_prefix="/v1/flows")

_ERRORS = {401: ("Missing or invalid API key.", "Error"), 503: ("Broker or Redis unavailable; retry later.", "Error")}
_ACCEPTED_LINKS = {
    "GetFlow": Link("flows.get_flow", {"flow_id": "$response.body#/id"}, "The flow's status."),
    "FollowFlowEvents": Link("flows.flow_events", {"flow_id": "$response.body#/id"}, "The flow's changes."),
    "CancelFlow": Link("flows.cancel_flow", {"flow_id": "$response.body#/id"}, "Cancel what has not started."),
}

#: What the document says the flow's stream sends.
STREAM = EventStream(
    "FlowEvent",
    (
        Event("snapshot", "Flow", with_id=False),
        Event("node", "FlowNodeEvent", with_id=False),
        Event("flow", "Flow", with_id=False),
        Event("error", "Error", with_id=False),
    ),
    id_description="Flow events have no id: a client that reconnects starts again from a snapshot.",
)


def flow_links(flow_id: str) -> dict[str, str]:
    """The status and events URLs of a flow."""
    status_url = f"{public_base()}/v1/flows/{flow_id}"
    return {"status_url": status_url, "events_url": f"{status_url}/events"}


def find_flow(flow_id: str) -> dict[str, Any]:
    """The caller's flow's status, or 404 (another tenant's flow looks the same as an unknown one).

    Raises:
        NotFound: no such flow for this caller.
    """
    flow = services().store.flows.get(flow_id[:64], tenant=caller().scope)
    if flow is None:
        raise NotFound(f"Flow {flow_id[:64]!r} does not exist.")
    return flow


@bp.post("")
@requires("client")
@documented(
    Operation(
        "Submit a flow of jobs",
        description=(
            "A graph of jobs in one request: `nodes`, each a job submission (`type`, `payload`, `options`) with a "
            "`name` unique in the flow and the names of the nodes it `needs`. The nodes that need nothing are "
            "published at once; each other node waits (`waiting`) until every node it needs has ended, then runs "
            "and reads their results (`ctx.child_results`, by node name). Per need, `on_failure` says what a "
            "failure of that node does: `fail` (the default: this node fails and every node that has not started "
            "is cancelled), `ignore` (this node runs without it) or `continue` (this node runs with the failure "
            "in its child results). Every node is validated first, as `POST /v1/jobs` validates a job (all or "
            "none): a 422 names the node (`nodes[6].payload.ms`), a cycle, an unknown need, or a flow of more "
            f"than {MAX_NODES:,} nodes or {MAX_DEPTH} levels. Each node's job id derives from the flow's id and "
            "the node's name; "
            "with an `Idempotency-Key` the flow's id derives from the key, so the same key and body answer the "
            "same flow (200) and record nothing new, and another body is a 409."
        ),
        request="FlowRequest",
        headers=(("Idempotency-Key", IDEMPOTENCY_KEY, "Same key and body return the same flow; another is a 409."),),
        tag="flows",
        responses={
            200: ("The Idempotency-Key and body match an earlier flow: that flow, not a new one.", "FlowAccepted"),
            202: ("Accepted: every node recorded, the first ones confirmed by the broker.", "FlowAccepted"),
            400: ("Malformed JSON.", "Error"),
            403: ("The key may not submit.", "Error"),
            409: ("Idempotency-Key reused with another flow.", "Error"),
            413: ("Body too large.", "Error"),
            415: ("Not JSON.", "Error"),
            422: ("The flow or a node is invalid (the node is named); nothing was submitted.", "Error"),
            **_ERRORS,
        },
        links={200: _ACCEPTED_LINKS, 202: _ACCEPTED_LINKS},
    )
)
@submit_span
def submit_flow() -> tuple[Response, int, dict[str, str]]:
    """Validate every node first (all or none), then record the flow and publish the nodes that need nothing."""
    body = json_body()
    check_scope(body.get("nodes") if isinstance(body, dict) else None)
    submitted = services().publisher.flows.submit(body, tenant=caller().tenant, idempotency_key=idempotency_key())
    links = flow_links(submitted.flow_id)
    document = {
        "id": submitted.flow_id,
        **links,
        "nodes": [
            {"name": node.name, "id": node.job_id, "state": node.state, **job_links(node.job_id)}
            for node in submitted.nodes
        ],
    }
    return jsonify(document), (200 if submitted.replayed else 202), {"Location": links["status_url"]}


@bp.get("/<flow_id>")
@readable_with_token(lambda flow_id: f"flow:{flow_id}")
@documented(
    Operation(
        "Get a flow's status",
        description=(
            "The flow's state (`running` until every node has ended; then `succeeded` if every node no other node "
            "needs succeeded, else `failed`, or `cancelled`), its nodes per state, its progress and each node's "
            "job id and state (`waiting` while it waits for its needs). Also with the flow's browser token "
            "(`?token=`, see `POST /v1/flows/{flow_id}/token`)."
        ),
        tag="flows",
        query=(TOKEN_PARAMETER,),
        responses={200: ("The flow's status.", "Flow"), 404: ("No such flow.", "Error"), **_ERRORS},
    )
)
def get_flow(flow_id: str) -> Response:
    """The flow's state, counts per state, progress and each node's job id and state."""
    return jsonify(find_flow(flow_id))


@bp.post("/<flow_id>/cancel")
@requires("client")
@documented(
    Operation(
        "Cancel a flow",
        description=(
            "Cancels every node that has not started (waiting, queued or delayed); running nodes run to their end, "
            "and no node starts after them: the flow is `halted` at once, and `cancelled` once they have ended. A "
            "flow that already ended is a 409."
        ),
        tag="flows",
        responses={
            200: ("Cancelled: the flow's state and how many nodes were cancelled.", "FlowCancelled"),
            404: ("No such flow.", "Error"),
            409: ("The flow already ended.", "Error"),
            **_ERRORS,
        },
    )
)
def cancel_flow(flow_id: str) -> Response:
    """Cancel what has not started; running nodes end as they will."""
    flow_id = flow_id[:64]
    outcome, state, cancelled = services().publisher.flows.cancel(flow_id, tenant=caller().scope)
    if outcome == "missing":
        raise NotFound(f"Flow {flow_id!r} does not exist.")
    if outcome == "final":
        raise InvalidState(f"Flow {flow_id!r} already ended ({state}); it cannot be cancelled.")
    return jsonify({"id": flow_id, "state": state, "cancelled": cancelled})


@bp.get("/<flow_id>/events")
@readable_with_token(lambda flow_id: f"flow:{flow_id}")
@documented(
    Operation(
        "Follow a flow's changes (Server-Sent Events)",
        description=(
            "First a `snapshot` event (the flow's status, as `GET /v1/flows/{id}` answers it), then a `node` event "
            "for each state change of a node, and a `flow` event (the flow's final status) when the flow ends, "
            "after which the stream closes. Events have no id: a client that reconnects gets a new snapshot, "
            "which holds everything it missed. A stream that fails ends with an `error` event. Also with the "
            "flow's browser token (`?token=`), from the origins in `OFFLOAD_CORS_ORIGINS`."
        ),
        stream=STREAM,
        tag="flows",
        query=(TOKEN_PARAMETER,),
        responses={
            200: (
                "An event stream: snapshot, node and flow events, each with a JSON document as its data; it ends "
                "after the flow event (at once for a flow that has ended), or with an error event. The schema "
                "describes one event (OpenAPI 3.2's itemSchema).",
                None,
            ),
            404: ("No such flow.", "Error"),
            401: ("Missing or invalid API key.", "Error"),
            503: ("Too many open streams, or Redis unavailable.", "Error"),
        },
    )
)
def flow_events(flow_id: str) -> Response:
    """Stream a snapshot of the flow, then its nodes' changes until it ends."""
    flow_id = flow_id[:64]
    find_flow(flow_id)
    found = services()
    return event_stream(
        found,
        caller().tenant,
        lambda: found.store.flows.subscribe(flow_id),
        lambda pubsub: _stream(found, flow_id, pubsub),
        subject=f"flow {flow_id}",
    )


def _stream(found: Services, flow_id: str, pubsub: Any) -> Iterator[str]:
    flows = found.store.flows
    yield "retry: 2000\n\n"
    snapshot = flows.get(flow_id, tenant=None)  # read after subscribing: no change falls between
    if snapshot is None:
        return
    yield _event("snapshot", snapshot)
    if snapshot["state"] != "running":
        yield END
        return
    keepalive = found.settings.sse_keepalive
    deadline = time.monotonic() + MAX_STREAM_SECONDS
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=keepalive)
        if message is None:
            yield ": keep-alive\n\n"
            continue
        event = json.loads(message["data"])
        event["at"] = iso(event.get("at"))
        if event.get("kind") == "flow":
            final = flows.get(flow_id, tenant=None)
            yield _event("flow", final if final is not None else event)
            yield END
            return
        yield _event("node", event)


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"
