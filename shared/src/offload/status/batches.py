"""Batches: a named list of job ids whose status is the aggregate of its jobs'."""

from __future__ import annotations

import json
from typing import Any, cast

from offload.status.scripts import now_ms, redis_errors
from offload.status.states import JobState
from offload.status.store import StatusStore


class BatchStore:
    """Batches: a named list of job ids whose status is the aggregate of its jobs'.

    Args:
        store: the job status store whose client and prefix it shares.
        ttl: seconds a batch is remembered (the longest record retention).
    """

    def __init__(self, store: StatusStore, *, ttl: int) -> None:
        self.store = store
        self.ttl = ttl

    def create(self, batch_id: str, *, tenant: str, job_ids: list[str]) -> None:
        """Remember a batch and its jobs.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        key = self.store.keys.batch(batch_id)
        with redis_errors():
            pipe = self.store.client.pipeline(transaction=True)
            pipe.hset(
                key, mapping={"id": batch_id, "tenant": tenant, "created_at": now_ms(), "jobs": json.dumps(job_ids)}
            )
            pipe.expire(key, self.ttl)
            recent = self.store.keys.batches  # newest first, for the admin page; trimmed to the TTL
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
        with redis_errors():
            raw = cast(dict[str, str], self.store.client.hgetall(self.store.keys.batch(batch_id)))
            if not raw or (tenant is not None and raw.get("tenant") != tenant):
                return None
            job_ids: list[str] = json.loads(raw["jobs"])
            pipe = self.store.client.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.hmget(self.store.keys.job(job_id), "state", "progress")
            rows = pipe.execute()
        return _aggregate(raw, job_ids, rows)


def _aggregate(raw: dict[str, str], job_ids: list[str], rows: list[list[str | None]]) -> dict[str, Any]:
    counts = {state.value: 0 for state in JobState}
    jobs = []
    progress = 0.0
    for job_id, (state, percent) in zip(job_ids, rows, strict=True):
        state = state or "expired"
        counts[state] = counts.get(state, 0) + 1
        done = state in {s.value for s in JobState if s.terminal} or state == "expired"
        progress += 100.0 if done else float(percent or 0)
        jobs.append({"id": job_id, "state": state})
    total = len(job_ids)
    finished = sum(n for state, n in counts.items() if state not in {"queued", "scheduled", "running", "retrying"})
    return {
        "id": raw["id"],
        "total": total,
        "finished": finished,
        "done": finished == total,
        "progress": round(progress / total) if total else 100,
        "counts": counts,
        "created_at": int(raw["created_at"]),
        "jobs": jobs,
    }
