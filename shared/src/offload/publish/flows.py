"""Recording and publishing a flow the planner accepted (:mod:`offload.flows`).

Every node's record is written at once, with the flow's, in one script; then the nodes that need
nothing are published with one round of confirms. A node that needs others waits in Redis, and
the fan-in (``offload.status.flows``) hands it to the promoter when its children have ended.
"""

from __future__ import annotations

from typing import Any

from offload.errors import Conflict
from offload.flows import FlowPlan, new_flow_id, plan
from offload.publish.results import FlowSubmitted, SubmittedNode
from offload.publish.sequence import SubmitSequence, message_body, publish_traced, record_fields
from offload.publish.waiting import wait_until_ended
from offload.status import StatusStore, now_ms
from offload.status.flows import WAITING, NodeRecord
from offload.submission import Preparer
from offload.tracing import SpanKind, TraceCarrier, carrier, span


class Flows:
    """The SDK's flows (``publisher.flows``): submit a flow, read its status, wait for it, cancel it.

    Args:
        store: the job status store.
        preparer: validates each node against the job-type catalogue.
        sequence: records and publishes what the preparer accepted.
    """

    def __init__(self, store: StatusStore, preparer: Preparer, sequence: SubmitSequence) -> None:
        self.store = store
        self.preparer = preparer
        self.sequence = sequence

    def submit(self, body: Any, *, tenant: str, idempotency_key: str | None = None) -> FlowSubmitted:
        """Submit a flow, ``{"nodes": [...]}`` (see :mod:`offload.flows` for its shape), validated first (all or none).

        The nodes that need nothing are published at once; each other node starts when the nodes
        it needs have ended. With an ``idempotency_key`` the flow's id (and so every node's job
        id) derives from it: submitting it again answers the same flow and records nothing new.

        Raises:
            ValidationFailed: the flow's shape or a node is invalid; the field path starts with ``nodes[i]``.
            UnknownJobType: a node's type is unknown.
            QuotaExceeded: a quota is used up (nothing was recorded).
            Conflict: ``idempotency_key`` was used with another flow.
            BrokerUnavailable: a message was not confirmed (the flow is failed).
            StatusStoreUnavailable: Redis is unavailable.
        """
        flow = plan(body, preparer=self.preparer, tenant=tenant, flow_id=new_flow_id(tenant, idempotency_key))
        return submit_flow(self.sequence, flow)

    def get(self, flow_id: str, *, tenant: str | None = None) -> dict[str, Any] | None:
        """The flow's status (state, counts per state, each node's job id and state), or None.

        None for an unknown flow, or (with ``tenant``) another tenant's.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        return self.store.flows.get(flow_id, tenant=tenant)

    def wait(self, flow_id: str, *, timeout: float = 30.0, tenant: str | None = None) -> dict[str, Any] | None:
        """Block until the flow ends (or ``timeout`` seconds pass) and return its status, as :meth:`get`.

        Follows the flow's events channel rather than polling; None for an unknown flow.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        return wait_until_ended(
            lambda: self.store.flows.subscribe(flow_id),
            lambda: self.store.flows.get(flow_id, tenant=tenant),
            lambda flow: flow["state"] != "running",
            timeout,
        )

    def cancel(self, flow_id: str, *, tenant: str | None = None) -> tuple[str, str | None, int]:
        """Cancel every node of the flow that has not started: ``(outcome, flow state, nodes cancelled)``.

        ``outcome``: ``cancelled``, ``final`` (the flow had ended) or ``missing`` (unknown, or another tenant's).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        return self.store.flows.cancel(flow_id, tenant=tenant)


def submit_flow(sequence: SubmitSequence, flow: FlowPlan, *, kind: str = "flow") -> FlowSubmitted:
    """Record every node of ``flow`` and publish those that need nothing, their quota held.

    ``kind``: ``flow``, or ``batch`` for a batch (:func:`offload.flows.plan_batch`).

    If the broker did not confirm a message, the flow is withdrawn (every record deleted, as a
    job's is) and the caller gets the error; unless a worker already took one of the messages that
    went out: then the flow stays, accepted, and the nodes whose message was lost fail
    (``broker_unavailable``), which fails the flow as a failing child would.

    Raises:
        QuotaExceeded: a quota is used up (nothing was recorded).
        Conflict: the idempotency key was used with another flow.
        BrokerUnavailable: a message was not confirmed (the flow is withdrawn).
        StatusStoreUnavailable: Redis is unavailable.
    """
    with span("offload.publish", kind=SpanKind.PRODUCER, attributes={"offload.flow_id": flow.flow_id}):
        return _submit_flow(sequence, flow, kind, carrier())


def _submit_flow(sequence: SubmitSequence, flow: FlowPlan, kind: str, trace: TraceCarrier | None) -> FlowSubmitted:
    """:func:`submit_flow` inside its publish span; every node's record and message carry ``trace``."""
    jobs = [node.job for node in flow.nodes]
    store = sequence.store
    with sequence.held(jobs) as hold:
        created_at = now_ms()
        records = _records(flow, created_at, trace)
        outcome = store.flows.create(
            flow.flow_id, tenant=flow.tenant, nodes=records, fingerprint=flow.fingerprint, kind=kind
        )
        if outcome == "conflict":
            raise Conflict(
                "This Idempotency-Key was already used with a different flow.", code="idempotency_key_reused"
            )
        submitted = [
            SubmittedNode(node.name, node.job.job_id, _first_state(record))
            for node, record in zip(flow.nodes, records, strict=True)
        ]
        if outcome == "exists":  # an idempotent replay: the nodes as they are now
            current = store.flows.get(flow.flow_id, tenant=flow.tenant)
            now = {node["name"]: node["state"] for node in current["nodes"]} if current is not None else {}
            replayed = [SubmittedNode(node.name, node.job_id, now.get(node.name, node.state)) for node in submitted]
            return FlowSubmitted(flow.flow_id, replayed, replayed=True)
        immediate = [node.job for node in flow.nodes if not node.needs and node.job.delay is None]
        messages: list[tuple[str, bytes, int | None]] = [
            (job.contract.queue, message_body(job, created_at=created_at, trace=trace), job.priority.broker_priority)
            for job in immediate
        ]
        traces = [trace] * len(immediate) if trace is not None else None
        sent = publish_traced(sequence.transport, messages, traces, timeout=sequence.publish_timeout)
        failed = [(job, error) for job, error in zip(immediate, sent, strict=True) if error is not None]
        if failed and store.flows.withdraw(flow.flow_id):
            raise failed[0][1]  # nothing is left behind, the quota is given back
        for job, error in failed:  # a worker took another of its messages: the flow stays, and fails
            store.lifecycle.fail_unstarted(job.job_id, ("broker_unavailable", str(error)))
        hold.keep()
        return FlowSubmitted(flow.flow_id, submitted)


def _records(flow: FlowPlan, created_at: int, trace: TraceCarrier | None) -> list[NodeRecord]:
    """Each node's record: its job's fields, the children it waits for and the nodes waiting for it."""
    job_ids = {node.name: node.job.job_id for node in flow.nodes}
    parents: dict[str, list[tuple[str, str]]] = {node.name: [] for node in flow.nodes}
    for node in flow.nodes:
        for name, policy in node.needs:
            parents[name].append((node.job.job_id, policy))
    return [
        NodeRecord(
            job_id=node.job.job_id,
            name=node.name,
            fields={**record_fields(node.job, created_at=created_at, trace=trace), "flow_id": flow.flow_id},
            children=tuple((name, job_ids[name], policy) for name, policy in node.needs),
            parents=tuple(parents[node.name]),
            run_at=created_at + int(node.job.delay * 1000) if node.job.delay is not None else None,
        )
        for node in flow.nodes
    ]


def _first_state(record: NodeRecord) -> str:
    if record.children:
        return WAITING
    return "scheduled" if record.run_at is not None else "queued"
