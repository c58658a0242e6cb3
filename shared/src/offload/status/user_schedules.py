"""Schedules that tenants make over the API: their records in Redis, written by the API and the scheduler.

One hash per schedule (``schedule:<id>``) holds the tenant's definition (JSON, validated by
:mod:`offload.user_schedules` before it gets here) beside the fields only the scheduler writes
(the last tick handled, the last run, the ticks missed), so that an edit and a fire never
overwrite each other. Every write after the creation is a script that first checks the schedule
still exists: a scheduler firing while the schedule is deleted must not bring back half a record.
Times are milliseconds since the epoch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from redis.typing import EncodableT, FieldT

if TYPE_CHECKING:
    from offload.status.store import StatusStore

#: Set fields (ARGV pairs) of KEYS[1] if it exists; 1 if it did.
_SET_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""
#: Replace the definition (ARGV[2..]: field pairs) if KEYS[1] exists at version ARGV[1]: 1, else 0
#: (gone) or -1 (changed meanwhile: an edit read before another landed must not undo it).
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'version') or '0') ~= tonumber(ARGV[1]) then return -1 end
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""
#: Pause (ARGV[1] = since) or resume (ARGV[1] = '', ARGV[2] = now: ticks while paused are not owed).
_PAUSE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[1] ~= '' then
  if redis.call('HGET', KEYS[1], 'paused_at') == false then redis.call('HSET', KEYS[1], 'paused_at', ARGV[1]) end
elseif redis.call('HDEL', KEYS[1], 'paused_at') == 1 then
  redis.call('HSET', KEYS[1], 'last_tick', ARGV[2])
end
return 1
"""
#: The scheduler handled the ticks up to ARGV[1]: move ``last_tick`` forward only (two schedulers
#: racing at a failover may both report the same tick), note the run (ARGV[2] job id, ARGV[3] at,
#: '' for none), add ARGV[4] ticks missed and set or clear the last error (ARGV[5]).
_ADVANCE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local last = tonumber(redis.call('HGET', KEYS[1], 'last_tick') or '0')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('HSET', KEYS[1], 'last_tick', ARGV[1], 'last_error', ARGV[5])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'last_job_id', ARGV[2], 'last_run_at', ARGV[3]) end
if tonumber(ARGV[4]) > 0 then redis.call('HINCRBY', KEYS[1], 'missed', ARGV[4]) end
return 1
"""


@dataclass(frozen=True)
class StoredSchedule:
    """One tenant-made schedule as Redis holds it.

    ``definition`` is the validated request (timing, job, missed-tick policy); ``anchor`` is the
    moment interval ticks count from; ``last_tick`` the last tick the scheduler handled (fired,
    skipped or owed none: creation, a timing change and a resume set it to their moment).
    """

    id: str
    tenant: str
    definition: dict[str, Any]
    created_at: int
    updated_at: int
    anchor: int
    last_tick: int
    paused_at: int | None = None
    last_job_id: str | None = None
    last_run_at: int | None = None
    missed: int = 0
    last_error: str | None = None
    #: Bumped by every edit of the definition (:meth:`UserSchedules.update` checks it).
    version: int = 0

    @classmethod
    def from_hash(cls, schedule_id: str, fields: dict[str, str]) -> StoredSchedule:
        """The schedule of a ``schedule:<id>`` hash's fields."""

        def number(name: str) -> int | None:
            raw = fields.get(name)
            return int(raw) if raw else None

        return cls(
            id=schedule_id,
            tenant=fields["tenant"],
            definition=json.loads(fields["definition"]),
            created_at=int(fields["created_at"]),
            updated_at=int(fields["updated_at"]),
            anchor=int(fields["anchor"]),
            last_tick=int(fields["last_tick"]),
            paused_at=number("paused_at"),
            last_job_id=fields.get("last_job_id") or None,
            last_run_at=number("last_run_at"),
            missed=int(fields.get("missed") or 0),
            last_error=fields.get("last_error") or None,
            version=int(fields.get("version") or 0),
        )


class UserSchedules:
    """The tenant-made schedules: create, read, list, edit, pause, resume, delete; the scheduler's progress.

    Raises (every method):
        redis.RedisError: Redis is unavailable (callers wrap it: ``redis_errors``, the scheduler's loop).
    """

    def __init__(self, store: StatusStore) -> None:
        self.client = store.client
        self.keys = store.keys
        self._set = self.client.register_script(_SET_IF_EXISTS)
        self._update = self.client.register_script(_UPDATE)
        self._pause = self.client.register_script(_PAUSE)
        self._advance = self.client.register_script(_ADVANCE)

    def count(self, tenant: str) -> int:
        """How many schedules ``tenant`` has."""
        return int(self.client.scard(self.keys.user_schedules_of(tenant)))

    def create(self, schedule_id: str, *, tenant: str, definition: dict[str, Any], now: int) -> None:
        """Store a new schedule; its first tick is its timing's first after ``now`` (nothing is owed before)."""
        fields: dict[FieldT, EncodableT] = {
            "tenant": tenant,
            "definition": json.dumps(definition, separators=(",", ":")),
            "created_at": now,
            "updated_at": now,
            "anchor": now,
            "last_tick": now,
        }
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.user_schedule(schedule_id), mapping=fields)
            pipe.sadd(self.keys.user_schedules, schedule_id)
            pipe.sadd(self.keys.user_schedules_of(tenant), schedule_id)
            pipe.execute()

    def get(self, schedule_id: str, *, tenant: str | None = None) -> StoredSchedule | None:
        """The schedule ``schedule_id``, if it exists and (with ``tenant``) is that tenant's."""
        fields = cast(dict[str, str], self.client.hgetall(self.keys.user_schedule(schedule_id)))
        if not fields or (tenant is not None and fields.get("tenant") != tenant):
            return None
        return StoredSchedule.from_hash(schedule_id, fields)

    def listing(self, *, tenant: str | None = None) -> list[StoredSchedule]:
        """Every schedule (of ``tenant``, if given), oldest first."""
        index = self.keys.user_schedules if tenant is None else self.keys.user_schedules_of(tenant)
        ids = sorted(cast(set[str], self.client.smembers(index)))
        with self.client.pipeline(transaction=False) as pipe:
            for schedule_id in ids:
                pipe.hgetall(self.keys.user_schedule(schedule_id))
            found = cast(list[dict[str, str]], pipe.execute())
        schedules = [StoredSchedule.from_hash(i, fields) for i, fields in zip(ids, found, strict=True) if fields]
        return sorted(schedules, key=lambda s: (s.created_at, s.id))

    def update(
        self, schedule_id: str, *, version: int, definition: dict[str, Any], now: int, retime: bool
    ) -> Literal["updated", "gone", "changed"]:
        """Replace the definition read at ``version``; ``retime`` (a new timing) counts ticks from ``now``.

        Returns ``gone`` if the schedule no longer exists, ``changed`` if another edit landed since
        ``version`` was read (nothing is written then).
        """
        fields: list[str | int] = [version, "definition", json.dumps(definition, separators=(",", ":"))]
        fields += ["updated_at", now]
        if retime:
            fields += ["anchor", now, "last_tick", now]
        done = int(self._update(keys=[self.keys.user_schedule(schedule_id)], args=fields))
        return "updated" if done == 1 else "gone" if done == 0 else "changed"

    def pause(self, schedule_id: str, *, now: int) -> bool:
        """Stop firing the schedule (kept paused since the first pause); False if it does not exist."""
        return bool(self._pause(keys=[self.keys.user_schedule(schedule_id)], args=[now, ""]))

    def resume(self, schedule_id: str, *, now: int) -> bool:
        """Fire the schedule again from ``now`` on: ticks that passed while it was paused are not owed."""
        return bool(self._pause(keys=[self.keys.user_schedule(schedule_id)], args=["", now]))

    def ran(self, schedule_id: str, *, job_id: str, now: int) -> bool:
        """Note a run started by hand ("run now") as the schedule's last run; False if it does not exist."""
        fields: list[str | int] = ["last_job_id", job_id, "last_run_at", now]
        return bool(self._set(keys=[self.keys.user_schedule(schedule_id)], args=fields))

    def advance(
        self,
        schedule_id: str,
        *,
        tick: int,
        job_id: str | None = None,
        now: int = 0,
        missed: int = 0,
        error: str | None = None,
    ) -> bool:
        """The scheduler handled every tick up to ``tick``: ``job_id`` ran for it, ``missed`` were not run.

        Moves only forward; False if the schedule is gone or already handled ``tick``.
        """
        args: list[str | int] = [tick, job_id or "", now, missed, error or ""]
        return bool(self._advance(keys=[self.keys.user_schedule(schedule_id)], args=args))

    def delete(self, schedule_id: str, *, tenant: str) -> None:
        """Remove the schedule (``tenant``'s) and its place in the indexes."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.user_schedule(schedule_id))
            pipe.srem(self.keys.user_schedules, schedule_id)
            pipe.srem(self.keys.user_schedules_of(tenant), schedule_id)
            pipe.execute()
