"""Recording and publishing a flow the planner accepted (:mod:`offload.flows`).

Every node's record is written at once, with the flow's, in one script; then the nodes that need
nothing are published with one round of confirms. A node that needs others waits in Redis, and
the fan-in (``offload.status.flows``) hands it to the promoter when its children have ended.
"""

from __future__ import annotations

from offload.errors import Conflict
from offload.flows import FlowPlan
from offload.publish.results import FlowSubmitted, SubmittedNode
from offload.publish.sequence import SubmitSequence, message_body, record_fields
from offload.status import now_ms
from offload.status.flows import WAITING, NodeRecord


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
    jobs = [node.job for node in flow.nodes]
    store = sequence.store
    with sequence.held(jobs) as hold:
        created_at = now_ms()
        records = _records(flow, created_at)
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
        sent = sequence.transport.publish_many(
            [
                (job.contract.queue, message_body(job, created_at=created_at), job.priority.broker_priority)
                for job in immediate
            ],
            timeout=sequence.publish_timeout,
        )
        failed = [(job, error) for job, error in zip(immediate, sent, strict=True) if error is not None]
        if failed and store.flows.withdraw(flow.flow_id):
            raise failed[0][1]  # nothing is left behind, the quota is given back
        for job, error in failed:  # a worker took another of its messages: the flow stays, and fails
            store.lifecycle.fail_unstarted(job.job_id, ("broker_unavailable", str(error)))
        hold.keep()
        return FlowSubmitted(flow.flow_id, submitted)


def _records(flow: FlowPlan, created_at: int) -> list[NodeRecord]:
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
            fields={**record_fields(node.job, created_at=created_at), "flow_id": flow.flow_id},
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
