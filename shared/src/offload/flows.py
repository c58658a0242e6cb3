"""Flows: many jobs submitted as one graph, where a node runs once the nodes it needs have ended.

A flow is ``{"nodes": [...]}``: each node is a job submission (``type``, ``payload``, ``options``)
with a ``name`` unique in the flow and the names of the nodes it ``needs`` (its children, in
BullMQ's words; its parents, in Hatchet's). A node with needs starts when all of them have ended,
and reads their results in its handler (``ctx.child_results``, by node name). What a child's
failure does is said per edge, ``{"node": "b", "on_failure": "continue"}``:

- ``fail`` (the default): the waiting node fails and every node of the flow that has not started
  is cancelled;
- ``ignore``: the node runs without that child's result;
- ``continue``: the node runs, and the child's failure is its entry in ``child_results``.

:func:`plan` validates a flow as the HTTP API and the SDK receive it: its shape (names, needs,
no cycle, at most :data:`MAX_NODES` nodes and :data:`MAX_DEPTH` levels), and every node exactly as
``POST /v1/jobs`` validates a job, the node named in each error. Every node's job id derives from
the flow's id and the node's name (:func:`node_job_id`), so a flow submitted again under the same
idempotency key names the same jobs.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from offload import problems
from offload.errors import UnknownJobType, ValidationFailed
from offload.submission import PreparedJob, Preparer, fingerprint

#: The most nodes one flow may have.
MAX_NODES = 1000
#: The most levels one flow may have (a chain of needs of this many nodes).
MAX_DEPTH = 50
#: What a node's name may be: short, and safe in a field path and a log line.
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Policy = Literal["fail", "ignore", "continue"]
POLICIES: tuple[Policy, ...] = ("fail", "ignore", "continue")

_NODE_KEYS = {"name", "type", "payload", "options", "needs"}
_FLOW_NAMESPACE = uuid.UUID("8f4b8a52-6a43-4c7c-9d0e-5b1f0e6f7a10")


@dataclass(frozen=True)
class PlannedNode:
    """One node of a validated flow: its job, and the nodes it needs with each edge's policy."""

    name: str
    job: PreparedJob
    needs: tuple[tuple[str, Policy], ...]


@dataclass(frozen=True)
class FlowPlan:
    """A validated flow, ready to be recorded: its nodes in submission order."""

    flow_id: str
    tenant: str
    nodes: tuple[PlannedNode, ...]
    fingerprint: str


def new_flow_id(tenant: str, idempotency_key: str | None) -> str:
    """A flow's id: random, or derived from the tenant and idempotency key (the same flow again)."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_FLOW_NAMESPACE, f"{tenant}\n{idempotency_key}"))


def node_job_id(flow_id: str, name: str) -> str:
    """The job id of node ``name``: derived from the flow's id, so a resubmitted flow names the same jobs."""
    return str(uuid.uuid5(uuid.UUID(flow_id), f"node/{name}"))


def plan(body: Any, *, preparer: Preparer, tenant: str, flow_id: str) -> FlowPlan:
    """Validate a flow document (``{"nodes": [...]}``) into a :class:`FlowPlan`.

    Raises:
        ValidationFailed: the shape is wrong (a name, a need, a cycle, too many nodes or levels),
            or a node is invalid as a job; the field path starts with ``nodes[i]`` and the
            message names the node.
        UnknownJobType: a node's type is unknown; the message names the node.
    """
    nodes = _nodes(body)
    names: dict[str, int] = {}
    for index, node in enumerate(nodes):
        name = _name(node, index)
        if name in names:
            raise _invalid(f"nodes[{index}].name", "unique", f"is the name of nodes[{names[name]}] too")
        names[name] = index
    needs = [_needs(node, index, names) for index, node in enumerate(nodes)]
    _check_acyclic(list(names), needs)
    planned = []
    for index, node in enumerate(nodes):
        name = node["name"]
        submission = {key: node[key] for key in ("type", "payload", "options") if key in node}
        job = _prepare(preparer, submission, f"nodes[{index}]", f"nodes[{index}] ({name!r})", tenant, flow_id, name)
        if needs[index] and job.delay is not None:
            raise _invalid(f"nodes[{index}].options.delay", "needs_delay", "a node with needs starts when they end")
        planned.append(PlannedNode(name, job, needs[index]))
    return FlowPlan(flow_id, tenant, tuple(planned), fingerprint(body))


def plan_batch(bodies: Sequence[Any], *, then: Any, preparer: Preparer, tenant: str, flow_id: str) -> FlowPlan:
    """A batch as a flow: one node per job, named by its index, none needing another.

    With ``then`` (a job submission), a last node named ``then`` needs every job with the
    ``continue`` policy: it runs once all have ended, and reads each one's result or failure (a
    batch's completion callback, Celery's chord). Errors name ``jobs[i]`` or ``then``, as the
    batch API always has.

    Raises:
        ValidationFailed: a job or ``then`` is invalid, or ``then`` has a delay.
        UnknownJobType: a job's type is unknown.
    """
    nodes = []
    for index, body in enumerate(bodies):
        where = f"jobs[{index}]"
        job = _prepare(preparer, body, where, where, tenant, flow_id, str(index), batch_id=flow_id)
        nodes.append(PlannedNode(str(index), job, ()))
    if then is not None:
        job = _prepare(preparer, then, "then", "then", tenant, flow_id, "then", batch_id=flow_id)
        if job.delay is not None:
            raise _invalid("then.options.delay", "needs_delay", "it starts when the batch's jobs have ended")
        nodes.append(PlannedNode("then", job, tuple((str(index), "continue") for index in range(len(bodies)))))
    return FlowPlan(flow_id, tenant, tuple(nodes), fingerprint({"jobs": list(bodies), "then": then}))


def _prepare(
    preparer: Preparer,
    body: Any,
    where: str,
    label: str,
    tenant: str,
    flow_id: str,
    name: str,
    *,
    batch_id: str | None = None,
) -> PreparedJob:
    """Validate one node's job as ``POST /v1/jobs`` would: field paths under ``where``, messages under ``label``.

    Raises:
        ValidationFailed: the job is invalid.
        UnknownJobType: its type is unknown.
    """
    try:
        return preparer.prepare(body, tenant=tenant, job_id=node_job_id(flow_id, name), batch_id=batch_id)
    except ValidationFailed as exc:
        fields = problems.nested(exc.errors, where)
        raise ValidationFailed(f"{label}: {exc.message}", errors=fields, code=exc.code) from None
    except UnknownJobType as exc:
        raise UnknownJobType(f"{label}: {exc.message}", field=f"{where}.type") from None


def _nodes(body: Any) -> list[dict[str, Any]]:
    expected = f"a list of 1-{MAX_NODES} nodes"
    if not isinstance(body, dict):
        raise _invalid("body", "dict_type", 'must be {"nodes": [...]}')
    extra = sorted(set(body) - {"nodes"})
    if extra:
        problem = problems.located((extra[0],), "extra_forbidden", "not a member of a flow")
        raise ValidationFailed(f"{extra[0]!r} is not a member of a flow.", errors=[problem])
    nodes = body.get("nodes")
    if "nodes" not in body:
        raise _invalid("nodes", "missing", expected)
    if not isinstance(nodes, list):
        raise _invalid("nodes", "list_type", expected)
    if not nodes:
        raise _invalid("nodes", "too_short", expected)
    if len(nodes) > MAX_NODES:
        raise _invalid("nodes", "too_long", expected)
    for index, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise _invalid(f"nodes[{index}]", "dict_type", "must be a JSON object")
        extra = sorted(set(node) - _NODE_KEYS)
        if extra:
            problem = problems.located(("nodes", index, extra[0]), "extra_forbidden", "not a member of a node")
            raise ValidationFailed(f"nodes[{index}]: {extra[0]!r} is not a member of a node.", errors=[problem])
    return nodes


def _name(node: dict[str, Any], index: int) -> str:
    name = node.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise _invalid(f"nodes[{index}].name", "pattern", "must be 1-64 letters, digits, '_' or '-'")
    return name


def _needs(node: dict[str, Any], index: int, names: dict[str, int]) -> tuple[tuple[str, Policy], ...]:
    """The nodes ``node`` needs with each edge's policy: ``"b"`` or ``{"node": "b", "on_failure": ...}``."""
    raw = node.get("needs", [])
    where = f"nodes[{index}].needs"
    if not isinstance(raw, list):
        raise _invalid(where, "list_type", "must be a list of node names")
    edges: dict[str, Policy] = {}
    for position, need in enumerate(raw):
        path = f"{where}[{position}]"
        policy: Any = "fail"
        if isinstance(need, dict):
            extra = sorted(set(need) - {"node", "on_failure"})
            if extra:
                raise _invalid(f"{path}.{extra[0]}", "extra_forbidden", "not a member of a need")
            policy = need.get("on_failure", "fail")
            if policy not in POLICIES:
                raise _invalid(f"{path}.on_failure", "literal_error", "must be 'fail', 'ignore' or 'continue'")
            need = need.get("node")
            path += ".node"
        if not isinstance(need, str) or need not in names:
            raise _invalid(path, "unknown_node", "must name another node of the flow")
        if need == node["name"]:
            raise _invalid(path, "cycle", "a node cannot need itself")
        if need in edges:
            raise _invalid(path, "unique", "names a node needed already")
        edges[need] = policy
    return tuple(edges.items())


def _check_acyclic(names: Sequence[str], needs: Sequence[tuple[tuple[str, Policy], ...]]) -> None:
    """Refuse a cycle, naming a node on it, and a flow deeper than :data:`MAX_DEPTH` levels.

    Kahn's algorithm: a node's level is one more than its deepest need's; what is never levelled
    is on a cycle (or waits for one).
    """
    index_of = {name: index for index, name in enumerate(names)}
    waiting = [len(edges) for edges in needs]
    parents: list[list[int]] = [[] for _ in names]
    for index, edges in enumerate(needs):
        for need, _ in edges:
            parents[index_of[need]].append(index)
    level = [1] * len(names)
    ready = [index for index, count in enumerate(waiting) if count == 0]
    done = 0
    while ready:
        child = ready.pop()
        done += 1
        if level[child] > MAX_DEPTH:
            raise _invalid(f"nodes[{child}].needs", "too_deep", f"makes the flow deeper than {MAX_DEPTH} levels")
        for parent in parents[child]:
            level[parent] = max(level[parent], level[child] + 1)
            waiting[parent] -= 1
            if waiting[parent] == 0:
                ready.append(parent)
    if done < len(names):
        # Each node left waits for another one left: walking such needs from any of them must come
        # back to a node already seen, which is on a cycle.
        seen: set[int] = set()
        node = min(index for index, count in enumerate(waiting) if count > 0)
        while node not in seen:
            seen.add(node)
            node = next(index_of[need] for need, _ in needs[node] if waiting[index_of[need]] > 0)
        raise _invalid(f"nodes[{node}].needs", "cycle", f"makes a cycle: {names[node]!r} would wait for itself")


def _invalid(path: str, rule: str, problem: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid {path!r}: {problem}.", errors=[problems.in_body(path, rule, problem)])
