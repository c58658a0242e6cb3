"""Rates shared by every process through Redis.

- :class:`TenantRates`: each tenant's request rate across every API process (``rate:<tenant>``),
  one GCRA bucket per tenant taken from in leases of several requests (the API's admission gate
  spends a lease in memory, so most requests cost no round trip).
- :class:`SendRate`: a provider's send rate across every worker process (``send-rate:<name>``): an
  SMTP or push service's limit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend

from offload.errors import TransientJobError

if TYPE_CHECKING:
    from offload.status.store import StatusStore


@dataclass(frozen=True)
class Grant:
    """What a tenant's shared bucket gave: ``requests`` allowed now, else ``wait`` seconds until one is."""

    requests: int
    wait: float


class TenantRates:
    """Each tenant's request rate, shared by every API process: a GCRA bucket per tenant in Redis.

    The bucket (``lua/tenant_rate.lua``) allows ``rate`` requests a second and ``burst`` at once (a
    full bucket); one call takes up to ``want`` of them, so that a process can take a lease of
    requests in one round trip and spend it locally. What a call grants is counted at once against
    every process: however the leases are spent, the tenant is never allowed more than
    ``burst + rate × seconds``.
    """

    def __init__(self, store: StatusStore) -> None:
        self.scripts = store.scripts

    def take(self, tenant: str, want: int, *, rate: float, burst: int, now: float | None = None) -> Grant:
        """Take up to ``want`` requests from ``tenant``'s bucket of ``rate``/s and ``burst``.

        ``now`` (epoch seconds) is for tests; by default the bucket goes by Redis's clock.

        Raises:
            StatusStoreUnavailable: Redis is unreachable or refused the script (``ScriptRunner``).
        """
        at_ms = 0 if now is None else now * 1000
        granted, wait_ms = self.scripts.run("tenant_rate", tenant, rate, burst, want, at_ms)
        return Grant(int(granted), max(0.0, int(wait_ms) / 1000))


class SendRate:
    """The provider's messages-per-second limit, shared by every worker process through Redis.

    Built on Dramatiq's ``WindowRateLimiter``: a send waits (in short sleeps) for a slot; after
    ``max_wait`` seconds without one the attempt is deferred (``code``, ``smtp_throttled`` by
    default) and retried later.
    """

    def __init__(
        self,
        store: StatusStore,
        name: str,
        *,
        per_second: int,
        max_wait: float = 10.0,
        code: str = "smtp_throttled",
        what: str = "The SMTP send rate",
    ) -> None:
        backend = RedisBackend(client=store.client)
        key = store.keys.send_rate(name)
        self.limiter = WindowRateLimiter(backend, key, limit=per_second, window=1)  # type: ignore[no-untyped-call]
        self.max_wait = max_wait
        self.code = code
        self.what = what

    def wait(self) -> None:
        """Block until the provider may take one more message.

        Raises:
            TransientJobError: no slot came within ``max_wait`` seconds.
        """
        deadline = time.monotonic() + self.max_wait
        while True:
            with self.limiter.acquire(raise_on_failure=False) as acquired:
                if acquired:
                    return
            if time.monotonic() > deadline:
                raise TransientJobError(f"{self.what} is saturated; deferring.", code=self.code)
            time.sleep(0.02)
