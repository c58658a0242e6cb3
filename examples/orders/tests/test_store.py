"""The shop's store and its gateway breaker, against the real Redis: no overselling, compensation once."""

from __future__ import annotations

import threading

import pytest
from offload_orders.breaker import CircuitBreaker
from offload_orders.store import ShopStore

from offload import TransientJobError


def test_racing_orders_never_take_more_than_is_in_stock(store: ShopStore) -> None:
    """Forty threads race for five posters, two at a time: two orders get them, one is short, none oversell."""
    start = threading.Barrier(40)
    outcomes: dict[int, bool] = {}

    def order(number: int) -> None:
        start.wait()
        outcomes[number] = store.reserve(f"order-{number}", {"poster": 2, "mug": 1}).ok

    threads = [threading.Thread(target=order, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(outcomes.values()) == 2
    assert (store.stock("poster"), store.stock("mug")) == (1, 98)  # the short orders took no mug either


def test_a_reservation_is_made_once_per_order_and_released_once(store: ShopStore) -> None:
    assert store.reserve("o1", {"mug": 4}).state == "held"
    assert store.reserve("o1", {"mug": 4}).state == "held"  # a redelivery finds it
    assert store.stock("mug") == 96
    assert store.release("o1") is True
    assert store.release("o1") is False
    assert (store.stock("mug"), store.reservation("o1")) == (100, "released")
    assert store.sell("o1") is False  # a released order cannot be sold


def test_a_short_line_names_its_sku(store: ShopStore) -> None:
    outcome = store.reserve("o2", {"mug": 1, "poster": 9})
    assert (outcome.ok, outcome.short_sku) == (False, "poster")
    assert store.reservation("o2") is None


def test_the_breaker_opens_after_its_threshold_holds_calls_back_and_lets_one_probe_through(store: ShopStore) -> None:
    breaker = CircuitBreaker(store.client, store.prefix, "gw", threshold=3, window=30, cooldown=1, probe_seconds=5)
    breaker.check()
    assert [breaker.failure() for _ in range(3)] == [False, False, True]
    with pytest.raises(TransientJobError) as held:
        breaker.check()
    assert (held.value.code, held.value.counted, held.value.retry_after) == ("circuit_open", False, 1.0)
    store.client.delete(breaker.keys[1])  # the cooldown ends (rather than sleeping through it)
    breaker.check()  # half-open: this call is the probe...
    with pytest.raises(TransientJobError):
        breaker.check()  # ...and the others wait for it
    assert breaker.failure() is True  # the probe failed: open again at once
    assert breaker.is_open
    store.client.delete(breaker.keys[1])
    breaker.check()
    breaker.success()  # the probe went through: closed for good
    breaker.check()
    breaker.check()
    assert not breaker.is_open
