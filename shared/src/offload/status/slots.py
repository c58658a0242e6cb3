"""Concurrency limits per key: at most N jobs with the same key run at once; the rest wait their turn.

A contract names a :class:`~offload.contracts.Concurrency` (e.g. at most one ``report.build`` per tenant); the
operator may change its limit with ``OFFLOAD_CONCURRENCY_LIMITS``. Slots are leases in Redis, held
by the running job and renewed while it runs, so a worker that dies (even SIGKILL) holds its slot
only until the lease runs out. A job that finds no free slot is not failed and not polled: it is
put in the key's waiting set (oldest first) and its message is acked; when a slot frees, the
worker that freed it publishes the oldest waiting job's stored message again, and a periodic sweep
does the same for slots freed by expiry.

Why not Dramatiq's ``ConcurrentRateLimiter``: over its limit it raises, and the message is retried
with backoff, so a waiting job polls (and uses up retries) instead of starting when a slot frees;
and Offload's retries wait in Redis, not in Dramatiq's delay queue.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from offload.contracts import JobContract
from offload.status.scripts import now_ms, redis_errors

if TYPE_CHECKING:
    from offload.status.store import StatusStore

logger = logging.getLogger(__name__)

#: Seconds a slot is leased for; a running job renews it every third of that.
LEASE_S = 30.0


# Take a slot (ARGV: 1 slots key, 2 waiting key, 3 waiting-keys set, 4 job id, 5 limit, 6 now,
# 7 lease ms, 8 the key's name for the set). A job already holding one (a redelivery) keeps it.
# Returns 1 if the job holds a slot, 0 if it was put in the waiting set.
_TAKE = """
local slots, waiting, id = ARGV[1], ARGV[2], ARGV[4]
local limit, now, lease = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
if redis.call('ZSCORE', slots, id) or redis.call('ZCARD', slots) < limit then
  redis.call('ZADD', slots, now + lease, id)
  redis.call('ZREM', waiting, id)
  return 1
end
redis.call('ZADD', waiting, 'NX', now, id)
redis.call('SADD', ARGV[3], ARGV[8])
return 0
"""

# Give back a slot (or none, for the sweep: id '') and take out the oldest waiting jobs that the
# free slots can start (ARGV: 1 slots, 2 waiting, 3 waiting-keys set, 4 job id, 5 limit, 6 now,
# 7 key name). Returns the job ids to wake.
_GIVE = """
local slots, waiting, id = ARGV[1], ARGV[2], ARGV[4]
local limit, now = tonumber(ARGV[5]), tonumber(ARGV[6])
if id ~= '' then redis.call('ZREM', slots, id) end
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
local free = limit - redis.call('ZCARD', slots)
if free <= 0 then return {} end
local wake = redis.call('ZRANGE', waiting, 0, free - 1)
if #wake > 0 then redis.call('ZREM', waiting, unpack(wake)) end
if redis.call('ZCARD', waiting) == 0 then redis.call('SREM', ARGV[3], ARGV[7]) end
return wake
"""


class Slots:
    """The slots and waiting sets of every concurrency key, in Redis.

    Args:
        store: the status store whose Redis client and key names it uses.
        lease_s: seconds a slot is held unless renewed.
    """

    def __init__(self, store: StatusStore, *, lease_s: float = LEASE_S) -> None:
        self.client = store.client
        self.keys = store.keys
        self.lease_ms = int(lease_s * 1000)
        self._take = self.client.register_script(_TAKE)
        self._give = self.client.register_script(_GIVE)

    @staticmethod
    def key(contract: JobContract, tenant: str, payload: Any) -> str | None:
        """The concurrency key of one job of ``contract`` (None if the contract has no limit)."""
        if contract.concurrency is None:
            return None
        return f"{contract.concurrency.name}|{contract.concurrency.key(tenant, payload)}"

    def _keys(self, key: str) -> tuple[str, str, str]:
        return self.keys.slots(key), self.keys.slots_waiting(key), self.keys.slots_with_waiters

    def take(self, key: str, job_id: str, limit: int) -> bool:
        """Take a slot of ``key`` for ``job_id``; False means it now waits its turn.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        slots, waiting, waiting_keys = self._keys(key)
        with redis_errors():
            taken = self._take(args=[slots, waiting, waiting_keys, job_id, limit, now_ms(), self.lease_ms, key])
        return bool(taken)

    def renew(self, key: str, job_id: str) -> None:
        """Extend ``job_id``'s lease on its slot of ``key`` (only if it still holds it).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        slots, _, _ = self._keys(key)
        with redis_errors():
            self.client.zadd(slots, {job_id: now_ms() + self.lease_ms}, xx=True)

    def give(self, key: str, job_id: str, limit: int) -> list[str]:
        """Give back ``job_id``'s slot of ``key``; returns the waiting jobs the free slots can start.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        slots, waiting, waiting_keys = self._keys(key)
        with redis_errors():
            wake = self._give(args=[slots, waiting, waiting_keys, job_id, limit, now_ms(), key])
        return [w.decode() if isinstance(w, bytes) else str(w) for w in cast(list[Any], wake)]

    def wait_again(self, key: str, job_ids: list[str]) -> None:
        """Put jobs that could not be woken back at the head of ``key``'s waiting set.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        if not job_ids:
            return
        _, waiting, waiting_keys = self._keys(key)
        with redis_errors():
            self.client.zadd(waiting, {job_id: 0 for job_id in job_ids})
            self.client.sadd(waiting_keys, key)

    def keys_with_waiters(self) -> list[str]:
        """The concurrency keys that have waiting jobs (for the sweep).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            members = self.client.smembers(self.keys.slots_with_waiters)
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in cast(set[Any], members))
