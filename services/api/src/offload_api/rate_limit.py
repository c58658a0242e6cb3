"""Per-tenant request rates: a bucket per process, and the one shared by every API process.

:class:`SharedBuckets` is what the admission gate uses: the tenant's bucket is one GCRA bucket in
Redis (:class:`~offload.status.rates.TenantRates`), so N API processes together allow the
configured rate, not N times it. A round trip per request would cost more than the rest of the
gate, so each process takes a *lease* of requests in one call (about :data:`LEASE_SECONDS` of the
rate) and spends it in memory; a refusal remembers until when the shared bucket has nothing, and
refuses locally until then. Over-admission is impossible (what a lease grants is counted in Redis
at once); the unspent part of the leases is at most one lease per process, a few percent of the
rate, and is dropped after :data:`HOLD_SECONDS`, so a lease never adds to a later burst.

When Redis cannot be reached, each process falls back to :class:`TokenBuckets`, its own bucket
of the same rate and burst (N processes then allow N times the rate), and tries Redis again after
:data:`RETRY_REDIS_SECONDS`: a rate limit never turns an outage into errors.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from offload.errors import StatusStoreUnavailable
from offload.status.rates import TenantRates

log = logging.getLogger(__name__)

#: A lease is this many seconds of the rate (at least one request): at 1,000/s, 20 requests.
LEASE_SECONDS = 0.02
#: Seconds a process keeps the unspent part of a lease.
HOLD_SECONDS = 1.0
#: Seconds a process uses its own buckets after Redis failed, before it tries Redis again.
RETRY_REDIS_SECONDS = 1.0
#: Most seconds a request waits for another's round trip for the same tenant (the Redis client's
#: timeout is one second) before it is judged by the local bucket instead.
LOCK_WAIT_SECONDS = 1.0


class TokenBuckets:
    """A token bucket per tenant: ``rate`` tokens a second, at most ``burst`` saved up.

    Thread-safe; one instance per process. Buckets are created on a tenant's first request, so
    there are at most as many as there are tenants with a valid key.
    """

    def __init__(self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, tenant: str) -> float:
        """Take one token of ``tenant``'s: 0.0 if there was one, else the seconds until there is."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(tenant, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[tenant] = (tokens - 1.0, now)
                return 0.0
            self._buckets[tenant] = (tokens, now)
        return (1.0 - tokens) / self.rate


@dataclass
class _Lease:
    """What one process holds of a tenant's shared bucket."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    #: Requests granted and not yet spent, usable until ``expires``.
    requests: int = 0
    expires: float = 0.0
    #: The shared bucket had nothing until this moment (the local clock).
    empty_until: float = 0.0


class SharedBuckets:
    """Each tenant's bucket shared by every API process, spent here in leases (see the module).

    Args:
        rates: the tenants' buckets in Redis.
        rate: requests per second per tenant, across all processes.
        burst: requests a tenant may make at once above its rate.
        clock: the local monotonic clock (leases, waits).
        shared_clock: the epoch seconds the Redis buckets go by; ``None``: Redis's own clock
            (tests pass a fake one).
    """

    def __init__(
        self,
        rates: TenantRates,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        shared_clock: Callable[[], float] | None = None,
    ) -> None:
        self.rates = rates
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.shared_clock = shared_clock
        #: Requests taken from Redis per round trip.
        self.lease = max(1, min(burst, math.floor(rate * LEASE_SECONDS)))
        #: The fallback while Redis is unreachable.
        self.local = TokenBuckets(rate, float(burst), clock=clock)
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()
        self._redis_down_until = -math.inf

    def take(self, tenant: str) -> float:
        """Take one request of ``tenant``'s: 0.0 if allowed, else the seconds until one is."""
        lease = self._leases.get(tenant)
        if lease is None:
            with self._lock:
                lease = self._leases.setdefault(tenant, _Lease())
        # One round trip per tenant at a time: the others wait for its lease, but never longer
        # than Redis's own timeout would make them (a hung Redis: they use the local bucket).
        if not lease.lock.acquire(timeout=LOCK_WAIT_SECONDS):
            return self.local.take(tenant)
        try:
            return self._take(tenant, lease)
        finally:
            lease.lock.release()

    def _take(self, tenant: str, lease: _Lease) -> float:
        """:meth:`take`, holding the tenant's lease."""
        now = self.clock()
        if lease.requests and now < lease.expires:
            lease.requests -= 1
            return 0.0
        if now < lease.empty_until:
            return lease.empty_until - now
        if now < self._redis_down_until:
            return self.local.take(tenant)
        try:
            grant = self.rates.take(
                tenant,
                self.lease,
                rate=self.rate,
                burst=self.burst,
                now=None if self.shared_clock is None else self.shared_clock(),
            )
        except StatusStoreUnavailable:
            log.warning(
                "Redis is unavailable: per-tenant rates are limited per API process for %s s",
                RETRY_REDIS_SECONDS,
            )
            self._redis_down_until = self.clock() + RETRY_REDIS_SECONDS
            return self.local.take(tenant)
        now = self.clock()
        if grant.requests:
            lease.requests, lease.expires = grant.requests - 1, now + HOLD_SECONDS
            return 0.0
        lease.requests, lease.empty_until = 0, now + grant.wait
        return grant.wait
