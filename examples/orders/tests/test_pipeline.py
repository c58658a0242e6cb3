"""The order pipeline with the real workers: paid orders, declined cards, empty shelves, redeliveries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from offload_orders.fake_gateway import FakeGateway
from offload_orders.store import ShopStore
from offload_orders.tracking import track

from offload import Publisher
from offload.testing import wait_for

TENANT = "shop"


def place(
    publisher: Publisher, *lines: tuple[str, int], token: str = "tok_visa", email: str = "ada@example.com"
) -> str:
    payload = {
        "customer": {"email": email, "name": "Ada"},
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
        "payment_token": token,
    }
    return publisher.publish("order.create", payload, tenant=TENANT).job_id


def settled(publisher: Publisher, order_id: str, timeout: float = 20.0) -> Any:
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen["view"] = track(publisher, order_id, tenant=TENANT)
        return seen["view"] is not None and seen["view"].done

    wait_for(done, timeout=timeout, message=lambda: f"order {order_id} never settled: {seen.get('view')}")
    return seen["view"]


def test_a_paid_order_is_charged_once_its_stock_sold_and_its_customer_emailed(
    pipeline: Callable[..., Any], store: ShopStore, gateway: FakeGateway, mailbox: tuple[Any, int]
) -> None:
    with pipeline() as publisher:
        order_id = place(publisher, ("mug", 2), ("tee", 1))
        view = settled(publisher, order_id)
    assert view.status == "confirmed"
    assert [step.type for step in view.steps] == ["order.create", "inventory.reserve", "payment.charge", "email.send"]
    assert view.amount_cents == 2 * 1250 + 2599
    assert [charge.amount_cents for charge in gateway.ledger.charges_of(order_id)] == [5099]
    assert (store.stock("mug"), store.stock("tee"), store.reservation(order_id)) == (98, 99, "sold")
    assert mailbox[0].subjects() == [f"Order {order_id} confirmed"]
