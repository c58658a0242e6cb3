"""Bulk operations' records: what each does to which jobs, how far it is, and who runs it now.

An operation keeps the ids it matched when it began (a list) and its ``position`` in them, moved
on after every chunk with the counts of that chunk, in one transaction: a process that dies
mid-chunk leaves the position before the chunk, and whoever resumes (when the lease lapses) does
that chunk again. The actions are idempotent per job (a retry reopens only an ended job, a cancel
ends only a waiting one, a delete removes only an ended one), so a chunk done twice changes no job
twice, and counts the jobs done the first time as skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import cast

from redis.typing import EncodableT, FieldT

from offload.status.facet import Facet
from offload.status.scripts import now_ms, redis_errors

#: How long an operation's record and job list are kept.
OPERATION_TTL_MS = 7 * 24 * 3600 * 1000
_IDS_PER_PUSH = 1_000


@dataclass(frozen=True)
class OperationRecord:
    """A bulk operation as stored."""

    id: str
    action: str
    tenant: str | None
    filter: dict[str, str]
    state: str
    matched: int
    done: int
    skipped: int
    failed: int
    position: int
    created_at: int
    finished_at: int | None
    error: str | None

    @classmethod
    def from_hash(cls, operation_id: str, raw: dict[str, str]) -> OperationRecord:
        """The record a hash of :meth:`Operations.create` holds."""
        return cls(
            id=operation_id,
            action=raw["action"],
            tenant=raw.get("tenant") or None,
            filter=json.loads(raw.get("filter") or "{}"),
            state=raw["state"],
            matched=int(raw.get("matched", 0)),
            done=int(raw.get("done", 0)),
            skipped=int(raw.get("skipped", 0)),
            failed=int(raw.get("failed", 0)),
            position=int(raw.get("position", 0)),
            created_at=int(raw["created_at"]),
            finished_at=int(raw["finished_at"]) if raw.get("finished_at") else None,
            error=raw.get("error") or None,
        )


class Operations(Facet):
    """Bulk operations' records, progress and leases (``<P>:operation:<id>``, its job list and lease)."""

    def create(
        self, operation_id: str, *, action: str, tenant: str | None, described: dict[str, str], job_ids: list[str]
    ) -> None:
        """Record a new operation over ``job_ids``, running, nothing done yet.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        key, jobs = self.keys.operation(operation_id), self.keys.operation_jobs(operation_id)
        fields: dict[FieldT, EncodableT] = {
            "action": action,
            "tenant": tenant or "",
            "filter": json.dumps(described),
            "state": "running",
            "matched": len(job_ids),
            "done": 0,
            "skipped": 0,
            "failed": 0,
            "position": 0,
            "created_at": now_ms(),
        }
        with redis_errors():
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(key, mapping=fields)
            for start in range(0, len(job_ids), _IDS_PER_PUSH):
                pipe.rpush(jobs, *job_ids[start : start + _IDS_PER_PUSH])
            pipe.pexpire(key, OPERATION_TTL_MS)
            pipe.pexpire(jobs, OPERATION_TTL_MS)
            pipe.execute()

    def get(self, operation_id: str, *, tenant: str | None = None) -> OperationRecord | None:
        """The operation, or None if unknown, expired or (``tenant`` given) another tenant's.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            raw = cast(dict[str, str], self.client.hgetall(self.keys.operation(operation_id)))
        if not raw or (tenant is not None and raw.get("tenant") != tenant):
            return None
        return OperationRecord.from_hash(operation_id, raw)

    def claim(self, operation_id: str, *, lease_ms: int) -> bool:
        """Take the lease of running the operation; False if a live process holds it.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            return bool(self.client.set(self.keys.operation_lease(operation_id), "1", nx=True, px=lease_ms))

    def next_jobs(self, operation_id: str, position: int, count: int) -> list[str]:
        """Up to ``count`` of the operation's job ids from ``position`` on.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            return cast(
                list[str], self.client.lrange(self.keys.operation_jobs(operation_id), position, position + count - 1)
            )

    def advance(self, operation_id: str, *, done: int, skipped: int, failed: int, to: int, lease_ms: int) -> None:
        """Count a chunk's outcomes, move the position to ``to`` and renew the lease, at once.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        key = self.keys.operation(operation_id)
        with redis_errors():
            pipe = self.client.pipeline(transaction=True)
            pipe.hincrby(key, "done", done)
            pipe.hincrby(key, "skipped", skipped)
            pipe.hincrby(key, "failed", failed)
            pipe.hset(key, "position", to)
            pipe.pexpire(self.keys.operation_lease(operation_id), lease_ms)
            pipe.execute()

    def finish(self, operation_id: str, *, error: str | None = None) -> None:
        """End the operation: ``succeeded``, or ``failed`` with ``error``; its lease is given up.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        fields: dict[FieldT, EncodableT] = {
            "state": "failed" if error else "succeeded",
            "finished_at": now_ms(),
            "error": error or "",
        }
        with redis_errors():
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(self.keys.operation(operation_id), mapping=fields)
            pipe.delete(self.keys.operation_lease(operation_id))
            pipe.execute()
