"""Flows in Redis: a flow's record, its nodes' job records, and the fan-in that starts a waiting node.

The layout and the fan-in are in ``lua/_prelude.lua`` (the flows section): the fan-in runs inside
whichever script ends a node's job (``finish``, in the worker's single and batched ends alike;
``cancel``; ``start`` when a job dies), counted once per child, so a parent becomes runnable
exactly once however its children end, twice delivered or at the same moment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, cast

from offload.status.facet import Facet
from offload.status.scripts import named, now_ms, redis_errors
from offload.status.states import JobState

#: How a node waiting for its children shows in a flow's status (its job is ``scheduled``, with no run time).
WAITING = "waiting"


@dataclass(frozen=True)
class NodeRecord:
    """What the store writes for one node: its job's record fields and where it starts."""

    job_id: str
    name: str
    fields: dict[str, str | int]
    #: Children it waits for (each: node name, job id, policy); none for a node that starts at once.
    children: tuple[tuple[str, str, str], ...] = ()
    #: The nodes that wait for it (each: job id, policy of the edge).
    parents: tuple[tuple[str, str], ...] = ()
    #: When a delayed node comes due (ms); None for one that is queued at once or waits.
    run_at: int | None = None


class FlowStore(Facet):
    """Flows: created with all their nodes at once, read as one status, cancelled as one.

    Every node is an ordinary job (listed, followed and cancelled like any); the flow's own
    record counts the nodes still pending and says whether something halted it.
    """

    def create(
        self, flow_id: str, *, tenant: str, nodes: list[NodeRecord], fingerprint: str, kind: str = "flow"
    ) -> Literal["created", "exists", "conflict"]:
        """Record the flow and every node's job (``queued``, or ``scheduled`` for a delayed or waiting one).

        ``kind`` is ``flow``, or ``batch`` for a batch (``offload.status.batches`` reads it as one).

        ``exists``: a flow with this id and the same request is recorded already (an idempotent
        replay); ``conflict``: one with another request.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        sinks = [node.job_id for node in nodes if not node.parents]
        flow = {
            "tenant": tenant,
            "kind": kind,
            "created_at": str(now_ms()),
            "total": str(len(nodes)),
            "pending": str(len(nodes)),
            "ttl": str(self.retention.failed * 1000),
            "sinks": json.dumps(sinks),
            "nodes": json.dumps([[node.name, node.job_id] for node in nodes]),
        }
        documents = [_node_document(node) for node in nodes]
        reply = named(
            self._run(
                "flow_create", flow_id, json.dumps(flow), json.dumps(documents, separators=(",", ":")), fingerprint
            )
        )
        return cast(Literal["created", "exists", "conflict"], reply["outcome"])

    def withdraw(self, flow_id: str) -> bool:
        """Delete a flow whose first messages the broker did not all confirm, as ``Lifecycle.abort`` a job.

        True if it was withdrawn (every node's record deleted, with a tombstone that makes a late
        message be dropped); False if a worker had taken one of its messages already (the flow
        stays: the broker had that message after all) or there is no such flow.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        return int(self._run("flow_abort", flow_id, self.retention.failed * 1000)) == 1

    def get(self, flow_id: str, *, tenant: str | None) -> dict[str, Any] | None:
        """The flow's state, counts per state and each node's job id and state; None if unknown or another tenant's.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            raw = cast(dict[str, str], self.client.hgetall(self.keys.flow(flow_id)))
            if not raw or (tenant is not None and raw.get("tenant") != tenant):
                return None
            nodes: list[list[str]] = json.loads(raw["nodes"])
            pipe = self.client.pipeline(transaction=False)
            for _, job_id in nodes:
                pipe.hmget(self.keys.job(job_id), "state", "scheduled_for", "progress")
            rows = pipe.execute()
        return _status(raw, nodes, rows)

    def cancel(self, flow_id: str, *, tenant: str | None) -> tuple[str, str | None, int]:
        """Cancel every node that has not started; returns ``(outcome, flow state, nodes cancelled)``.

        ``outcome``: ``cancelled``, ``final`` (the flow had ended) or ``missing``.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        reply = named(self._run("flow_cancel", flow_id, tenant or "*"))
        return reply["outcome"], reply.get("state"), int(reply.get("cancelled", 0))

    def child_results(self, job_id: str) -> dict[str, Any]:
        """What a flow node's children left it, by node name.

        A succeeded child's result, and for a child that did not succeed behind a ``continue``
        edge ``{"state", "error": {"code", "message"}}``. A child behind an ``ignore`` edge that
        did not succeed is left out; a job that is no node with children gets ``{}``.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            raw = self.client.hget(self.keys.job(job_id), "flow_children")
            if not raw:
                return {}
            children: list[list[str]] = json.loads(cast(str, raw))
            pipe = self.client.pipeline(transaction=False)
            for _, child_id, _ in children:
                pipe.hmget(self.keys.job(child_id), "state", "result", "error_code", "error_message")
            rows = pipe.execute()
        results: dict[str, Any] = {}
        for (name, _, policy), (state, result, code, message) in zip(children, rows, strict=True):
            if state == JobState.SUCCEEDED.value:
                results[name] = json.loads(result) if result else None
            elif policy == "continue":
                results[name] = {"state": state or "expired", "error": {"code": code or "", "message": message or ""}}
        return results

    def subscribe(self, flow_id: str) -> Any:
        """A pub/sub subscription to the flow's changes (each node's state change, the flow's ending); close it after.

        Raises:
            redis.RedisError: Redis is unavailable.
        """
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.subscribe(self.keys.flow_events(flow_id))
        return pubsub


def _node_document(node: NodeRecord) -> dict[str, Any]:
    """What ``lua/flow_create.lua`` reads for one node."""
    fields: dict[str, str | int] = {**node.fields, "flow_node": node.name}
    if node.children:
        fields["flow_children"] = json.dumps([list(child) for child in node.children], separators=(",", ":"))
        fields["flow_waiting"] = len(node.children)
    if node.parents:
        fields["flow_parents"] = json.dumps([list(parent) for parent in node.parents], separators=(",", ":"))
    waits = bool(node.children) or node.run_at is not None
    return {
        "id": node.job_id,
        "state": JobState.SCHEDULED.value if waits else JobState.QUEUED.value,
        "run_at": node.run_at or 0,
        "fields": [str(item) for pair in fields.items() for item in pair],
    }


def _status(raw: dict[str, str], nodes: list[list[str]], rows: list[list[str | None]]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    listed = []
    progress = 0
    for (name, job_id), (state, scheduled_for, percent) in zip(nodes, rows, strict=True):
        shown = state or "expired"
        if shown == JobState.SCHEDULED.value and not scheduled_for:
            shown = WAITING
        counts[shown] = counts.get(shown, 0) + 1
        done = shown == "expired" or (shown != WAITING and JobState(shown).terminal)
        node_progress = 100 if done else int(percent or 0)
        progress += node_progress
        listed.append({"name": name, "job_id": job_id, "state": shown, "progress": node_progress})
    total = len(nodes)
    return {
        "id": raw["id"],
        "tenant": raw.get("tenant", ""),
        "kind": raw.get("kind", "flow"),
        "state": raw["state"],
        "halted": raw.get("halted") or None,
        "total": total,
        "pending": int(raw["pending"]),
        "progress": round(progress / total) if total else 100,
        "counts": counts,
        "created_at": int(raw["created_at"]),
        "finished_at": int(raw["finished_at"]) if raw.get("finished_at") else None,
        "nodes": listed,
    }
