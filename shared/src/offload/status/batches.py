"""Batches: many jobs submitted together and followed as one; each batch is a flow of kind ``batch``.

A batch's jobs are the nodes of a flow (``offload.status.flows``) that need nothing, named by
their index; an optional last node, ``then``, needs them all and runs when they have ended. So
a batch has the flow's completion: its state, its ``flow`` event on ``/v1/flows/{id}/events``,
and its fan-in. This module only reads a flow as a batch, and keeps the admin page's list of
recent batches.
"""

from __future__ import annotations

from typing import Any, cast

from offload.status.flows import WAITING
from offload.status.scripts import now_ms, redis_errors
from offload.status.states import JobState
from offload.status.store import StatusStore

#: The states of a batch's job that are not finished (a ``then`` node waits as ``waiting``).
_UNFINISHED = {JobState.QUEUED.value, JobState.SCHEDULED.value, JobState.RUNNING.value, JobState.RETRYING.value}


class BatchStore:
    """Batches: flows of kind ``batch``, read in the shape ``GET /v1/batches/{id}`` answers.

    Args:
        store: the job status store whose client and prefix it shares.
        ttl: seconds a batch is listed on the admin page (the longest record retention).
    """

    def __init__(self, store: StatusStore, *, ttl: int) -> None:
        self.store = store
        self.ttl = ttl

    def remember(self, batch_id: str) -> None:
        """List a new batch among the recent ones (the admin page's), dropping those past the TTL.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        recent = self.store.keys.batches
        with redis_errors():
            pipe = self.store.client.pipeline(transaction=True)
            pipe.zadd(recent, {batch_id: now_ms()})
            pipe.zremrangebyscore(recent, "-inf", now_ms() - self.ttl * 1000)
            pipe.execute()

    def recent(self, limit: int = 50) -> list[str]:
        """The ids of the newest batches (of every tenant), newest first.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            return cast(list[str], self.store.client.zrevrange(self.store.keys.batches, 0, limit - 1))

    def get(self, batch_id: str, *, tenant: str | None) -> dict[str, Any] | None:
        """The batch with counts per state, overall progress and each job's state, or None.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        flow = self.store.flows.get(batch_id, tenant=tenant)
        if flow is None or flow["kind"] != "batch":
            return None
        return _as_batch(flow)


def _as_batch(flow: dict[str, Any]) -> dict[str, Any]:
    jobs = [node for node in flow["nodes"] if node["name"] != "then"]
    then = next((node for node in flow["nodes"] if node["name"] == "then"), None)
    counts = {state.value: 0 for state in JobState}
    for node in jobs:
        counts[node["state"]] = counts.get(node["state"], 0) + 1
    total = len(jobs)
    finished = sum(1 for node in jobs if node["state"] not in _UNFINISHED and node["state"] != WAITING)
    document: dict[str, Any] = {
        "id": flow["id"],
        "state": flow["state"],
        "total": total,
        "finished": finished,
        "done": finished == total,
        "progress": round(sum(node["progress"] for node in jobs) / total) if total else 100,
        "counts": counts,
        "created_at": flow["created_at"],
        "jobs": [{"id": node["job_id"], "state": node["state"]} for node in jobs],
    }
    if then is not None:
        document["then"] = {"id": then["job_id"], "state": then["state"]}
    return document
