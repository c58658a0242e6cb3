"""Per-tenant quotas (e.g. emails per hour), counted in Redis so every API process shares them.

A quota is a fixed hourly window per tenant and quota name: ``take`` adds the units a submission
costs and refuses (HTTP 429 with ``Retry-After``) when the window is full, giving the units back;
``give_back`` returns them when the submission does not go through after all. The size of a
quota comes with each call: it is the job type's registered policy
(:class:`~offload.contracts.SubmissionPolicy`), which its serving worker's settings decide.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from offload.errors import QuotaExceeded

if TYPE_CHECKING:
    from offload.status.store import StatusStore

_TAKE = """
local used = redis.call('INCRBY', KEYS[1], ARGV[1])
if used == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
if used > tonumber(ARGV[2]) then
  redis.call('DECRBY', KEYS[1], ARGV[1])
  return 0
end
return 1
"""


class Quotas:
    """Fixed-window quotas per tenant.

    Args:
        store: the status store whose Redis holds the counters.
        window: the window length in seconds.
    """

    def __init__(self, store: StatusStore, *, window: int = 3600) -> None:
        self.client = store.client
        self.keys = store.keys
        self.window = window
        self._take = self.client.register_script(_TAKE)

    def _key(self, tenant: str, name: str, now: float) -> tuple[str, int]:
        start = int(now // self.window) * self.window
        return self.keys.quota(name, tenant, start), start + self.window - int(now)

    def take(self, tenant: str, name: str, units: int, *, limit: int, now: float | None = None) -> None:
        """Count ``units`` against the tenant's quota ``name`` of ``limit`` units a window (0: unlimited).

        Raises:
            QuotaExceeded: the window has not enough left (nothing is counted then).
        """
        if limit <= 0 or units <= 0:
            return
        key, left = self._key(tenant, name, time.time() if now is None else now)
        if not self._take(keys=[key], args=[units, limit, self.window]):
            raise QuotaExceeded(
                f"The {name} quota of this tenant ({limit} per {self.window // 60} minutes) is used up.",
                retry_after=max(1, left),
            )

    def give_back(self, tenant: str, name: str, units: int, *, limit: int, now: float | None = None) -> None:
        """Return ``units`` taken for a submission that did not go through (``limit`` as taken)."""
        if limit > 0 and units > 0:
            key, _ = self._key(tenant, name, time.time() if now is None else now)
            self.client.decrby(key, units)
