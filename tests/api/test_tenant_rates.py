"""Per-tenant request rates shared by every API process: the GCRA bucket in Redis, the leases each
process spends from memory, and the per-process fallback while Redis is down.

The clocks are fake (the bucket's in Redis and the process's own) so the arithmetic is exact; the
bucket is the real script in the real Redis. Two real API processes holding a tenant to its rate
are in ``tests/system/test_cluster_rates.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from offload.errors import StatusStoreUnavailable
from offload.publish import Publisher
from offload.status.rates import Grant, TenantRates
from offload.status.store import StatusStore
from offload_api import rate_limit
from offload_api.app import create_app
from offload_api.rate_limit import SharedBuckets
from tests.helpers import free_port
from tests.support import REDIS_URL, Api, make_settings
from tests.system.stack import PrivateRedis


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Counted(TenantRates):
    """The real shared buckets, counting the round trips made to them."""

    def __init__(self, store: StatusStore) -> None:
        super().__init__(store)
        self.calls: list[int] = []

    def take(self, tenant: str, want: int, *, rate: float, burst: int, now: float | None = None) -> Grant:
        self.calls.append(want)
        return super().take(tenant, want, rate=rate, burst=burst, now=now)


@pytest.fixture
def store(redis_client: redis.Redis) -> Iterator[StatusStore]:
    store = StatusStore.from_url(REDIS_URL, prefix="ratetest")
    yield store
    store.close()


def test_the_shared_bucket_allows_its_burst_then_its_rate_and_grants_part_of_a_lease(store: StatusStore) -> None:
    rates, t = TenantRates(store), 5_000.0
    assert rates.take("acme", 4, rate=10, burst=6, now=t) == Grant(4, 0.0)
    assert rates.take("acme", 4, rate=10, burst=6, now=t) == Grant(2, 0.0)  # what is left of the burst
    assert rates.take("acme", 4, rate=10, burst=6, now=t) == Grant(0, 0.1)  # one request every 100 ms
    assert rates.take("acme", 4, rate=10, burst=6, now=t + 0.04) == Grant(0, 0.06)
    assert rates.take("acme", 4, rate=10, burst=6, now=t + 0.25) == Grant(2, 0.0)  # 2.5 requests' time
    assert rates.take("acme", 1, rate=10, burst=6, now=t + 0.25) == Grant(0, 0.05)  # the half left
    assert rates.take("globex", 1, rate=10, burst=6, now=t) == Grant(1, 0.0)  # a bucket per tenant
    # The key lives until the bucket is full again: then it is gone, and the burst is back whole.
    ttl = store.client.pttl(store.keys.tenant_rate("acme"))
    assert 0 < ttl <= 650
    assert rates.take("acme", 10, rate=10, burst=6, now=t + 60) == Grant(6, 0.0)


def test_by_default_the_bucket_goes_by_redis_clock(store: StatusStore) -> None:
    rates = TenantRates(store)
    assert [rates.take("acme", 1, rate=1, burst=2).requests for _ in range(3)] == [1, 1, 0]
    wait = rates.take("acme", 1, rate=1, burst=2).wait
    assert 0.5 < wait <= 1.0  # the next request is a second after the burst, less the time since


def test_a_process_spends_its_leases_from_memory_and_refuses_from_memory_until_the_bucket_has_more(
    store: StatusStore,
) -> None:
    rates, local, shared = Counted(store), Clock(), Clock()
    buckets = SharedBuckets(rates, 500.0, 25, clock=local, shared_clock=shared)
    assert buckets.lease == 10  # 20 ms of the rate
    assert [buckets.take("acme") for _ in range(25)] == [0.0] * 25  # the burst
    assert rates.calls == [10, 10, 10]  # three round trips: 10 + 10 + the 5 left
    assert buckets.take("acme") == pytest.approx(0.002)  # empty: the next request is 2 ms away
    assert len(rates.calls) == 4
    local.now += 0.001
    assert buckets.take("acme") == pytest.approx(0.001)  # refused from memory
    assert len(rates.calls) == 4
    local.now += 0.019
    shared.now += 0.02
    assert buckets.take("acme") == 0.0  # 20 ms later: a lease of 10
    assert rates.calls[-1] == 10
    assert [buckets.take("acme") for _ in range(9)] == [0.0] * 9
    assert len(rates.calls) == 5 and buckets.take("acme") > 0
    # What a process leaves unspent it drops after a while, so it never adds to a later burst.
    local.now += 0.04
    shared.now += 0.04
    assert buckets.take("acme") == 0.0  # a new lease: 1 spent, 9 held
    local.now += rate_limit.HOLD_SECONDS + 0.1
    shared.now += 0.01  # (the bucket's clock barely moved: only a new lease shows whether it was dropped)
    calls = len(rates.calls)
    buckets.take("acme")
    assert len(rates.calls) == calls + 1


def test_two_processes_taking_leases_share_one_rate(store: StatusStore) -> None:
    local, shared = Clock(), Clock()
    first, second = (SharedBuckets(TenantRates(store), 100.0, 10, clock=local, shared_clock=shared) for _ in range(2))
    accepted = 0
    for _ in range(300):  # 3 s, each process offered 1,000 requests a second
        for _ in range(10):
            accepted += (first.take("acme") == 0.0) + (second.take("acme") == 0.0)
        local.now += 0.01
        shared.now += 0.01
    assert 10 + 300 - 2 * first.lease <= accepted <= 10 + 300  # the burst and 100/s, less unspent leases


def test_while_redis_is_down_each_process_limits_with_its_own_bucket_and_tries_redis_again_later() -> None:
    down = StatusStore.from_url(f"redis://127.0.0.1:{free_port()}/0", prefix="ratetest")
    try:
        rates, local = Counted(down), Clock()
        buckets = SharedBuckets(rates, 2.0, 3, clock=local)
        assert [buckets.take("acme") for _ in range(3)] == [0.0] * 3  # the local bucket's burst
        assert buckets.take("acme") == pytest.approx(0.5)
        assert len(rates.calls) == 1  # Redis failed once; not tried again for a while
        local.now += rate_limit.RETRY_REDIS_SECONDS
        assert buckets.take("acme") == 0.0  # refilled locally meanwhile
        assert len(rates.calls) == 2
        with pytest.raises(StatusStoreUnavailable):
            rates.take("acme", 1, rate=2.0, burst=3)
    finally:
        down.close()


def test_with_redis_down_the_app_still_answers_429_over_the_rate_and_never_500(private_redis: PrivateRedis) -> None:
    settings = make_settings(redis_url=private_redis.url, tenant_rate_limit=0.2, tenant_rate_burst=3)
    publisher = Publisher.from_settings(settings)
    try:
        api = Api(create_app(settings, publisher=publisher).test_client())
        assert api.submit("system.noop").status_code == 202  # one of the shared bucket's 3
        private_redis.stop()
        started = time.monotonic()
        answers = [api.submit("system.noop") for _ in range(6)]
        statuses = [answer.status_code for answer in answers]
        assert statuses == [503, 503, 503, 429, 429, 429], statuses  # the local bucket's 3, then refused
        assert {answers[0].get_json()["error"]} == {"status_store_unavailable"}
        refused = answers[-1]
        assert refused.get_json()["error"] == "rate_limited" and refused.headers["Retry-After"] in {"4", "5"}
        assert api.as_("globex").submit("system.noop").status_code == 503  # another tenant's own bucket
        assert time.monotonic() - started < 5
    finally:
        publisher.close()
