"""A short, real slice of the issue's acceptance run: 200 checkouts at once, the gateway down a while.

The full run (a 30 s outage, the p99 of the 202s against its 50 ms target) is ``make bench
BENCH_ARGS="--only orders"``; this one keeps the same shape small enough for the default suite,
with timing bounds a busy two-core machine meets.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from offload_orders.breaker import CircuitBreaker
from offload_orders.fake_gateway import FakeGateway
from offload_orders.settings import ShopSettings
from offload_orders.store import ShopStore
from offload_orders.testing import free_port, shop_server
from offload_orders.tracking import OrderView, track

from offload.testing import wait_for

ORDERS = 200
STOCK = 150  # fewer than the orders: the last ones must find the shelf empty, never below zero
DECLINED_EVERY = 10
OUTAGE = 3.0
#: The 202s' p99 bound here, for 200 requests arriving at once on a two-core machine that runs the
#: workers and other suites too (1.2 s seen at a load average of 20); the target (50 ms) is the
#: benchmark's to measure, on a quiet machine.
P99_BOUND_MS = 5000


@pytest.mark.serial
def test_200_checkouts_at_once_through_a_gateway_outage(
    shop_settings: ShopSettings,
    store: ShopStore,
    gateway: FakeGateway,
    mailbox: tuple[Any, int],
    pipeline: Callable[..., Any],
) -> None:
    store.stock_item("limited", price_cents=1000, stock=STOCK)
    breaker = CircuitBreaker(store.client, shop_settings.orders_prefix, "gateway")
    with shop_server(shop_settings, free_port()) as shop, pipeline() as publisher:
        load = subprocess.Popen(
            [sys.executable, "-m", "offload_orders.loadgen", shop, "--orders", str(ORDERS), "--concurrency", "200"]
            + ["--sku", "limited", "--declined-every", str(DECLINED_EVERY)],
            stdout=subprocess.PIPE,
        )
        wait_for(lambda: len(gateway.ledger.by_key) >= 20, timeout=30, message="no charges went through")
        gateway.down()
        outage_ends = time.monotonic() + OUTAGE
        opened = False
        while time.monotonic() < outage_ends:
            opened = opened or breaker.is_open
            time.sleep(0.05)
        gateway.up()
        out, _ = load.communicate(timeout=60)
        run = json.loads(out)
        views: dict[str, OrderView] = {}

        def all_done() -> bool:
            for answer in run["answers"]:
                order_id = answer["order_id"]
                if order_id and (order_id not in views or not views[order_id].done):
                    view = track(publisher, order_id, tenant=shop_settings.orders_tenant)
                    assert view is not None, f"order {order_id} was answered 202 but has no job"
                    views[order_id] = view
            return len(views) == ORDERS and all(view.done for view in views.values())

        wait_for(all_done, timeout=60, interval=0.5, message=lambda: f"orders not done: {_count(views)}")
        wait_for(lambda: len(mailbox[0].messages) >= _count(views)["confirmed"], timeout=20, message="emails missing")
    print(f"202s: p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, max {run['max_ms']} ms; orders: {_count(views)}")  # noqa: T201 - shown with -s

    assert run["accepted"] == ORDERS, [a for a in run["answers"] if a["status"] != 202][:3]
    assert run["p99_ms"] < P99_BOUND_MS
    assert opened, "the breaker never opened while the gateway was down"
    statuses = _count(views)
    assert set(statuses) <= {"confirmed", "payment_failed", "out_of_stock"}
    confirmed = {order_id for order_id, view in views.items() if view.status == "confirmed"}
    declined = {a["order_id"] for n, a in enumerate(run["answers"]) if n % DECLINED_EVERY == DECLINED_EVERY - 1}
    failed = {order_id for order_id, view in views.items() if view.status == "payment_failed"}
    assert failed and failed <= declined  # the declined cards that found stock; no order was given up in the outage
    assert all(views[order_id].status in ("payment_failed", "out_of_stock") for order_id in declined)
    assert len(confirmed) <= STOCK and store.stock("limited") == STOCK - len(confirmed)  # nothing oversold
    assert gateway.ledger.charged_twice() == []
    assert {charge.reference for charge in gateway.ledger.by_key.values()} == confirmed
    subjects = collections.Counter(mailbox[0].subjects())
    assert {f"Order {order_id} confirmed" for order_id in confirmed} <= set(subjects)
    assert all(count == 1 for count in subjects.values())  # exactly one email per order
    assert sum(1 for s in subjects if s.endswith("confirmed")) == len(confirmed)
    assert {f"Order {order_id}: the payment did not go through" for order_id in failed} <= set(subjects)
    assert len(subjects) == len(confirmed) + len(failed)


def _count(views: dict[str, OrderView]) -> dict[str, int]:
    return collections.Counter(view.status for view in views.values())
