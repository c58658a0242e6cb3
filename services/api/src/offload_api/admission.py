"""Load shedding: each API process refuses at once the work it could not finish in time (issue 9, F14).

gevent accepts every connection and runs every request at the same time, so past capacity each
request would get a thinner slice of the cores and *every* answer would be late, the accepted ones
too, until clients time out and retry into the same queue. Instead, this WSGI middleware sits in
front of Flask and answers what is over a limit at once, before the body is read, so that a refusal
costs gunicorn's parsing and a dictionary lookup, not routing, authentication or JSON:

1. **Per tenant** (when ``OFFLOAD_TENANT_RATE_LIMIT`` is set): a bucket per tenant shared by
   every API process (a GCRA bucket in Redis, spent in leases of a few requests held in memory:
   :mod:`offload_api.rate_limit`), so the rate holds for the whole API however many processes
   serve it. Over it: 429 ``rate_limited`` with ``Retry-After`` = the seconds until the shared
   bucket has a request again. One tenant flooding the API then costs the others only these
   cheap refusals, most of them answered from memory.
2. **Per process**: a limit on requests in progress (a non-blocking concurrency limit, like
   Stripe's concurrent-requests limiter) and at most ``OFFLOAD_MAX_INFLIGHT_BODY_BYTES`` of
   declared request bodies (bounding the memory that many large bodies at once take). Over
   either: 503 ``overloaded`` with ``Retry-After: 1``. The limit adapts (additive increase,
   multiplicative decrease on latency, as Netflix's concurrency-limits and TCP's congestion
   window do): it starts at ``OFFLOAD_MAX_INFLIGHT_REQUESTS``, drops by a quarter when a
   request took longer than ``OFFLOAD_ADMISSION_TARGET_LATENCY`` in the app (at most once per
   that many seconds), and grows back by about one for every limit's worth of faster requests.
   A fixed limit is right for only one speed of machine: on 2 shared cores with the workers
   busy, capacity fell to a third and 64 requests in progress meant answers of several seconds.
   The limit is shared fairly between tenants: a request of a tenant holding less than its share
   (the limit divided by the tenants with requests in progress, counting it) is let in even at
   the limit, up to twice the limit in all, so a tenant flooding the API within its rate cannot
   take every slot from a quiet one (F14: the quiet tenant was refused ``overloaded`` while a
   noisy one ran at ten times its rate limit).

The second gate lives in the process's memory, and the first spends most requests from it:
neither needs RabbitMQ, and when Redis is unreachable the tenant buckets fall back to one per
process, so both keep working when those are the bottleneck. The backlog behind the API is
bounded elsewhere: the broker's ``max-length`` policy with ``overflow: reject-publish`` (D10)
makes a full queue nack a publish, which the publisher turns into 503 ``broker_backpressure``.

Health probes and ``/metrics`` are never refused: an overloaded process is alive, and operators
need its numbers most then. A streamed response (SSE) counts only until its first byte is ready;
open streams have their own limit (``OFFLOAD_MAX_EVENT_STREAMS``).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from offload.settings import ApiKey, Settings
from offload.status.rates import TenantRates
from offload_api.auth import grant_for
from offload_api.rate_limit import SharedBuckets, TokenBuckets

__all__ = ["ADMITTED_AT", "Admission", "TokenBuckets"]

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from offload.status.store import StatusStore

#: Paths never refused: liveness, readiness and the metrics scrape.
EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
#: Seconds an ``overloaded`` client is asked to wait: capacity comes back as soon as requests end.
OVERLOADED_RETRY_AFTER = 1
#: The adaptive limit never goes below this many requests in progress.
MIN_INFLIGHT = 4
#: What the limit is multiplied by when a request was slower than the target.
DECREASE = 0.75
#: The WSGI environ key holding the :func:`time.monotonic` moment a request was admitted: the
#: start of the time it has to be answered in (``OFFLOAD_SUBMIT_DEADLINE``).
ADMITTED_AT = "offload.admitted_at"


def _refusal(status: str, code: str, detail: str, retry_after: int) -> tuple[str, list[tuple[str, str]], bytes]:
    body = json.dumps({"error": code, "detail": detail, "retry_after": retry_after}).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Retry-After", str(retry_after)),
    ]
    return status, headers, body


_OVERLOADED = _refusal(
    "503 SERVICE UNAVAILABLE",
    "overloaded",
    "The API is at capacity; retry after the Retry-After seconds.",
    OVERLOADED_RETRY_AFTER,
)


class Admission:
    """The WSGI middleware that applies both gates in front of ``app``.

    Args:
        app: the Flask app's WSGI callable.
        max_inflight: requests this process works on at once (the adaptive limit's ceiling).
        target_latency: seconds in the app past which the limit is lowered (0: a fixed limit).
        max_inflight_body_bytes: bytes of request bodies admitted at once.
        max_body_bytes: the largest body the app reads (what a chunked body is counted as; a larger
            declared body is counted as nothing, since the app refuses it unread with 413).
        keys: the API keys by SHA-256 digest, to find a request's tenant.
        tenant_rate: requests per second per tenant (0: no per-tenant limit).
        tenant_burst: the bucket's size (0: one second's worth).
        rates: the tenants' buckets in Redis, shared by every API process (``None``: a bucket per
            tenant in this process only, as in tests of the gate alone).
        on_shed: called with ``"rate_limited"``, ``"inflight"`` or ``"body_bytes"`` for each refusal.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        max_inflight: int,
        max_inflight_body_bytes: int,
        target_latency: float = 0.0,
        max_body_bytes: int,
        keys: dict[bytes, ApiKey],
        tenant_rate: float = 0.0,
        tenant_burst: int = 0,
        rates: TenantRates | None = None,
        on_shed: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.max_inflight_body_bytes = max_inflight_body_bytes
        self.max_body_bytes = max_body_bytes
        self.keys = keys
        burst = tenant_burst or max(1, math.ceil(tenant_rate))
        self.buckets: SharedBuckets | TokenBuckets | None = None
        if tenant_rate > 0:
            self.buckets = (
                SharedBuckets(rates, tenant_rate, burst) if rates is not None else TokenBuckets(tenant_rate, burst)
            )
        self.on_shed = on_shed
        self.target_latency = target_latency
        #: The current limit on requests in progress (a float: it grows by fractions).
        self.limit = float(max_inflight)
        self._lowered_at = 0.0
        self.inflight = 0
        #: Requests in progress by tenant ("" for requests without a valid key).
        self.by_tenant: dict[str, int] = {}
        self.body_bytes = 0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        app: WSGIApplication,
        settings: Settings,
        keys: dict[bytes, ApiKey],
        on_shed: Callable[[str], None] | None = None,
        store: StatusStore | None = None,
    ) -> Admission:
        """The middleware configured by ``OFFLOAD_MAX_INFLIGHT_*`` and ``OFFLOAD_TENANT_RATE_*``.

        With ``store``, tenants' rates are shared by every API process through its Redis.
        """
        return cls(
            app,
            max_inflight=settings.max_inflight_requests,
            max_inflight_body_bytes=settings.max_inflight_body_bytes,
            target_latency=settings.admission_target_latency,
            max_body_bytes=settings.max_body_bytes,
            keys=keys,
            tenant_rate=settings.tenant_rate_limit,
            tenant_burst=settings.tenant_rate_burst,
            rates=TenantRates(store) if store is not None else None,
            on_shed=on_shed,
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") in EXEMPT:
            return self.app(environ, start_response)
        grant = grant_for(environ.get("HTTP_AUTHORIZATION", ""), self.keys)
        tenant = grant.tenant if grant is not None else ""
        if self.buckets is not None:
            if grant is not None:  # an invalid key goes on to the app: 401 (and the bad-key count)
                wait = self.buckets.take(grant.tenant)
                if wait > 0.0:
                    return self._refuse(
                        start_response,
                        _refusal(
                            "429 TOO MANY REQUESTS",
                            "rate_limited",
                            "This tenant is over its request rate; retry after the Retry-After seconds.",
                            max(1, math.ceil(wait)),
                        ),
                        "rate_limited",
                    )
        cost = self._body_cost(environ)
        with self._lock:
            if self.inflight >= int(self.limit) and not self._under_fair_share(tenant):
                refused = "inflight"
            elif self.body_bytes + cost > self.max_inflight_body_bytes:
                refused = "body_bytes"
            else:
                refused = ""
                self.inflight += 1
                self.by_tenant[tenant] = self.by_tenant.get(tenant, 0) + 1
                self.body_bytes += cost
        if refused:
            return self._refuse(start_response, _OVERLOADED, refused)
        started = environ[ADMITTED_AT] = time.monotonic()
        try:
            return self.app(environ, start_response)
        finally:
            ended = time.monotonic()
            with self._lock:
                self.inflight -= 1
                left = self.by_tenant[tenant] - 1
                if left:
                    self.by_tenant[tenant] = left
                else:
                    del self.by_tenant[tenant]
                self.body_bytes -= cost
                if self.target_latency > 0:
                    self._adapt(ended - started, ended)

    def _under_fair_share(self, tenant: str) -> bool:
        """Whether ``tenant`` holds less than its share of the limit, and the process is under twice it."""
        mine = self.by_tenant.get(tenant, 0)
        tenants = len(self.by_tenant) + (0 if mine else 1)
        return mine < int(self.limit) / tenants and self.inflight < 2 * int(self.limit)

    def _adapt(self, took: float, now: float) -> None:
        """Lower the limit after a slow request (once per target), raise it a little after a fast one."""
        if took > self.target_latency:
            if now - self._lowered_at >= self.target_latency:
                self.limit = max(float(MIN_INFLIGHT), self.limit * DECREASE)
                self._lowered_at = now
        elif self.limit < self.max_inflight:
            self.limit = min(float(self.max_inflight), self.limit + 1.0 / self.limit)

    def _body_cost(self, environ: WSGIEnvironment) -> int:
        """The body bytes this request may make the app hold."""
        length = environ.get("CONTENT_LENGTH")
        if length:
            try:
                declared = int(length)
            except ValueError:
                return 0  # the app refuses it with 400
            return declared if declared <= self.max_body_bytes else 0
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return self.max_body_bytes
        return 0

    def _refuse(
        self, start_response: StartResponse, refusal: tuple[str, list[tuple[str, str]], bytes], reason: str
    ) -> list[bytes]:
        status, headers, body = refusal
        if self.on_shed is not None:
            self.on_shed(reason)
        start_response(status, list(headers))
        return [body]
