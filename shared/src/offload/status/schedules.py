"""The scheduler's state in Redis: the leader lock, each schedule's last tick, ticks enqueued and missed."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from offload.status.store import StatusStore

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ScheduleState:
    """The scheduler's keys: the leader lock, each schedule's last tick handled, the ticks enqueued and missed.

    ``scheduler:leader`` (the lock), ``scheduler:last:<name>``, and the hashes ``scheduler:ran``
    and ``scheduler:missed`` (by schedule name, for listings).

    Raises (every method):
        redis.RedisError: Redis is unavailable (the scheduler's loop logs it and tries again).
    """

    def __init__(self, store: StatusStore) -> None:
        self.client = store.client
        self.keys = store.keys
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)

    def take_or_renew(self, identity: str, ttl_ms: int, *, holding: bool) -> bool:
        """Hold the leader lock for ``ttl_ms`` more: renew it if ``holding``, else take it if free."""
        lock = self.keys.scheduler_leader
        if holding and self._renew(keys=[lock], args=[identity, ttl_ms]):
            return True
        return bool(self.client.set(lock, identity, nx=True, px=ttl_ms))

    def release(self, identity: str) -> None:
        """Give up the leader lock if ``identity`` holds it."""
        self._release(keys=[self.keys.scheduler_leader], args=[identity])

    def last_tick(self, name: str) -> datetime | None:
        """The last tick of schedule ``name`` that was handled (None for a schedule never seen)."""
        raw = self.client.get(self.keys.scheduler_last(name))
        return datetime.fromisoformat(str(raw)) if raw is not None else None

    def start(self, name: str, now: datetime) -> None:
        """Note a schedule seen for the first time: it starts from ``now`` (no backfill)."""
        self.client.set(self.keys.scheduler_last(name), now.isoformat())

    def enqueued(self, name: str, tick: datetime, *, skipped: int) -> None:
        """Record that ``tick`` of ``name`` was enqueued, ``skipped`` ticks before it having passed unrun."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.scheduler_last(name), tick.isoformat())
            pipe.hset(self.keys.scheduler_ran, name, tick.isoformat())
            if skipped:
                pipe.hincrby(self.keys.scheduler_missed, name, skipped)
            pipe.execute()

    def listing(self, names: list[str]) -> list[tuple[str | None, int]]:
        """For each schedule of ``names``: its last tick enqueued (ISO, or None) and its ticks missed."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hmget(self.keys.scheduler_ran, names)
            pipe.hmget(self.keys.scheduler_missed, names)
            lasts, missed = cast(tuple[list[str | None], list[str | None]], tuple(pipe.execute()))
        return [(last, int(skipped or 0)) for last, skipped in zip(lasts, missed, strict=True)]
