"""Load shedding: each API process refuses at once the work it could not finish in time (issue 9, F14).

gevent accepts every connection and runs every request at the same time, so past capacity each
request would get a thinner slice of the cores and *every* answer would be late, the accepted ones
too, until clients time out and retry into the same queue. Instead, this WSGI middleware sits in
front of Flask and answers what is over a limit at once, before the body is read, so that a refusal
costs gunicorn's parsing and a dictionary lookup, not routing, authentication or JSON:

1. **Per tenant** (when ``OFFLOAD_TENANT_RATE_LIMIT`` is set): a token bucket per tenant and
   process (the request-rate limiter of Stripe's and Envoy's local rate limit). Over it: 429
   ``rate_limited`` with ``Retry-After`` = the seconds until a token is back. One tenant flooding
   the API then costs the others only these cheap refusals.
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

Both gates live in the process's memory: they need neither Redis nor RabbitMQ, so they keep
working when those are the bottleneck. The backlog behind the API is bounded elsewhere: the
broker's ``max-length`` policy with ``overflow: reject-publish`` (D10) makes a full queue nack a
publish, which the publisher turns into 503 ``broker_backpressure``.

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
from offload_api.auth import grant_for

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

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
        on_shed: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.max_inflight_body_bytes = max_inflight_body_bytes
        self.max_body_bytes = max_body_bytes
        self.keys = keys
        self.buckets = (
            TokenBuckets(tenant_rate, float(tenant_burst or max(1, math.ceil(tenant_rate))))
            if tenant_rate > 0
            else None
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
    ) -> Admission:
        """The middleware configured by ``OFFLOAD_MAX_INFLIGHT_*`` and ``OFFLOAD_TENANT_RATE_*``."""
        return cls(
            app,
            max_inflight=settings.max_inflight_requests,
            max_inflight_body_bytes=settings.max_inflight_body_bytes,
            target_latency=settings.admission_target_latency,
            max_body_bytes=settings.max_body_bytes,
            keys=keys,
            tenant_rate=settings.tenant_rate_limit,
            tenant_burst=settings.tenant_rate_burst,
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
