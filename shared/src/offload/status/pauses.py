"""Paused queues and job types: workers stop starting their jobs; resuming starts them again.

An operator pauses a queue (``media``) or one job type (``image.resize``) with
``POST /v1/queues/{name}/pause``. Submissions are still accepted. A worker that receives a job of
a paused queue or type does not start it: it parks the job in Redis (the record, with its stored
message, is there: written by the publisher, or by adoption first for a job published on the wire;
the park set only lists it) and acks the message, so nothing waits unacked in the broker for hours
(``consumer_timeout``) and nothing is dead-lettered. On resume, the
promoter of any worker moves the parked jobs into the schedule as due now, and they are published
again, oldest first, with the same leases as delayed jobs (so a worker dying mid-way loses none).

Workers read the paused set at most once a second, so a pause takes effect within about a second
and a few jobs already started finish normally.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, cast

from offload.status.scripts import now_ms, redis_errors

if TYPE_CHECKING:
    from offload.status.store import StatusStore

#: Seconds a worker trusts its copy of the paused set.
CACHE_SECONDS = 1.0

# Move the parked jobs of every target that is no longer paused into the schedule, due now.
# ARGV: 1 prefix, 2 now. Returns how many were moved.
_UNPARK = """
local P, now = ARGV[1], tonumber(ARGV[2])
local moved = 0
for _, target in ipairs(redis.call('SMEMBERS', P .. ':parked-targets')) do
  if redis.call('HEXISTS', P .. ':paused', target) == 0 then
    local parked = P .. ':parked:' .. target
    local ids = redis.call('ZRANGE', parked, 0, 999)
    for _, jid in ipairs(ids) do
      redis.call('ZADD', P .. ':scheduled', now, jid)
      moved = moved + 1
    end
    if #ids > 0 then redis.call('ZREM', parked, unpack(ids)) end
    if redis.call('ZCARD', parked) == 0 then redis.call('SREM', P .. ':parked-targets', target) end
  end
end
return moved
"""


class Pauses:
    """The paused queues and job types, and the jobs parked while they were paused.

    Args:
        store: the status store whose Redis client and key names it uses.
    """

    def __init__(self, store: StatusStore) -> None:
        self.client = store.client
        self.keys = store.keys
        self._unpark = self.client.register_script(_UNPARK)
        self._cached: dict[str, int] = {}
        self._cached_at = float("-inf")
        self._lock = threading.Lock()

    def pause(self, target: str) -> int:
        """Pause ``target`` (a queue or a job type); returns since when (ms), the first pause's time.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            self.client.hsetnx(self.keys.paused, target, now_ms())
            since = self.client.hget(self.keys.paused, target)
        return int(cast(Any, since) or 0)

    def resume(self, target: str) -> bool:
        """Resume ``target``; False if it was not paused. Parked jobs start within a promoter loop.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            return bool(self.client.hdel(self.keys.paused, target))

    def paused(self) -> dict[str, int]:
        """Every paused target and since when (ms), read from Redis now.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            raw = cast(dict[Any, Any], self.client.hgetall(self.keys.paused))
        return {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}

    def parked_count(self, target: str) -> int:
        """How many jobs of ``target`` wait parked.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            return int(self.client.zcard(self.keys.parked(target)))

    def paused_target(self, queue: str, job_type: str) -> str | None:
        """The paused target a job of ``job_type`` on ``queue`` falls under, or None.

        Read from this process's copy of the paused set, at most :data:`CACHE_SECONDS` old.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with self._lock:
            if time.monotonic() - self._cached_at > CACHE_SECONDS:
                self._cached = self.paused()
                self._cached_at = time.monotonic()
            paused = self._cached
        if job_type in paused:
            return job_type
        return queue if queue in paused else None

    def park(self, target: str, job_id: str, created_at: int) -> None:
        """List ``job_id`` as parked under ``target`` (its record and message stay where they are).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            pipe = self.client.pipeline(transaction=True)
            pipe.zadd(self.keys.parked(target), {job_id: created_at}, nx=True)
            pipe.sadd(self.keys.parked_targets, target)
            pipe.execute()

    def unpark_resumed(self) -> int:
        """Schedule, due now, the parked jobs of every target no longer paused; returns how many.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            return int(cast(Any, self._unpark(args=[self.keys.prefix, now_ms()])))
