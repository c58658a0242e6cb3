"""The order pipeline with the real workers: paid orders, declined cards, empty shelves, redeliveries."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from offload_orders.breaker import CircuitBreaker
from offload_orders.fake_gateway import FakeGateway
from offload_orders.models import CreateOrder, Order
from offload_orders.settings import ShopSettings
from offload_orders.store import ShopStore
from offload_orders.tracking import track
from offload_orders.worker import PAYMENT_RETRY, SPEC, Shop, charge_payment, create_order, reserve_stock

from offload import JobContext, PermanentJobError, Publisher, Resources
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
    assert [step.type for step in view.steps] == [*(job.name for job in SPEC.jobs), "email.send"]
    assert view.amount_cents == 2 * 1250 + 2599
    assert [charge.amount_cents for charge in gateway.ledger.charges_of(order_id)] == [5099]
    assert (store.stock("mug"), store.stock("tee"), store.reservation(order_id)) == (98, 99, "sold")
    assert mailbox[0].subjects() == [f"Order {order_id} confirmed"]


def test_a_declined_card_releases_the_stock_and_tells_the_customer(
    pipeline: Callable[..., Any], store: ShopStore, gateway: FakeGateway, mailbox: tuple[Any, int]
) -> None:
    with pipeline() as publisher:
        order_id = place(publisher, ("poster", 2), token="tok_declined")
        view = settled(publisher, order_id)
        wait_for(lambda: len(mailbox[0].messages) == 1, timeout=10, message="no payment-failed email")
    assert view.status == "payment_failed"
    assert view.steps[-1].error_code == "payment_declined"
    assert gateway.ledger.charges_of(order_id) == [] and gateway.ledger.declined == 1
    assert (store.stock("poster"), store.reservation(order_id)) == (5, "released")
    assert mailbox[0].subjects() == [f"Order {order_id}: the payment did not go through"]
    assert "your card was declined" in mailbox[0].messages[0].get_body(("plain",)).get_content()


def test_an_order_for_more_than_is_left_fails_without_taking_or_charging_anything(
    pipeline: Callable[..., Any], store: ShopStore, gateway: FakeGateway, mailbox: tuple[Any, int]
) -> None:
    with pipeline() as publisher:
        order_id = place(publisher, ("mug", 1), ("poster", 6))
        view = settled(publisher, order_id)
    assert (view.status, view.steps[-1].error_code) == ("out_of_stock", "out_of_stock")
    assert "poster" in (view.steps[-1].error_message or "")
    assert (store.stock("mug"), store.stock("poster"), store.reservation(order_id)) == (100, 5, None)
    assert gateway.ledger.requests == 0 and mailbox[0].messages == []


def test_an_unknown_product_rejects_the_order_naming_it(pipeline: Callable[..., Any], gateway: FakeGateway) -> None:
    with pipeline() as publisher:
        order_id = place(publisher, ("mug", 1), ("unicorn", 1))
        view = settled(publisher, order_id)
    assert (view.status, view.steps[-1].error_code) == ("rejected", "unknown_sku")
    assert "unicorn" in (view.steps[-1].error_message or "")


def test_a_gateway_that_times_out_after_charging_is_not_charged_again_on_the_retry(
    pipeline: Callable[..., Any], store: ShopStore, gateway: FakeGateway, mailbox: tuple[Any, int]
) -> None:
    gateway.delay = 1.5  # past the shop's 1 s timeout: the gateway charges, the shop never hears of it
    with pipeline() as publisher:
        order_id = place(publisher, ("tee", 1))
        wait_for(lambda: gateway.ledger.requests >= 1, timeout=10, message="no charge was tried")
        gateway.delay = 0.0
        view = settled(publisher, order_id, timeout=30)
    assert view.status == "confirmed"
    assert view.steps[2].attempts >= 2  # the first attempt timed out
    assert len(gateway.ledger.charges_of(order_id)) == 1 and gateway.ledger.charged_twice() == []
    assert mailbox[0].subjects() == [f"Order {order_id} confirmed"]


def test_every_step_delivered_again_makes_no_second_job_charge_or_email(
    pipeline: Callable[..., Any],
    shop_settings: ShopSettings,
    store: ShopStore,
    gateway: FakeGateway,
    mailbox: tuple[Any, int],
) -> None:
    """A worker that dies after a step's effects but before its ack gets the step redelivered: replay each."""
    with pipeline() as publisher:
        order_id = place(publisher, ("mug", 3))
        view = settled(publisher, order_id)
        shop = Shop.from_settings(shop_settings, publisher)

        def redeliver(index: int) -> JobContext:
            step = view.steps[index]
            return JobContext(
                step.job_id, step.type, TENANT, attempt=2, store=publisher.store, resources=Resources([shop])
            )

        def payload(index: int) -> Any:
            return publisher.get(view.steps[index].job_id).payload

        again = [
            create_order(redeliver(0), CreateOrder.model_validate(payload(0))).next_job,
            reserve_stock(redeliver(1), Order.model_validate(payload(1))).next_job,
            charge_payment(redeliver(2), Order.model_validate(payload(2))).next_job,
        ]
        shop.close()
        wait_for(lambda: len(mailbox[0].messages) >= 1, timeout=10, message="no confirmation")
        later = track(publisher, order_id, tenant=TENANT)
    assert again == [step.job_id for step in view.steps[1:]]  # each replay found the job its first delivery made
    assert later == view
    assert len(gateway.ledger.charges_of(order_id)) == 1 and gateway.ledger.requests == 2  # one charge, asked twice
    assert (store.stock("mug"), store.reservation(order_id)) == (97, "sold")
    assert mailbox[0].subjects() == [f"Order {order_id} confirmed"]


def test_a_failing_gateway_opens_the_breaker_and_the_order_waits_then_completes(
    pipeline: Callable[..., Any],
    shop_settings: ShopSettings,
    store: ShopStore,
    gateway: FakeGateway,
    mailbox: tuple[Any, int],
) -> None:
    gateway.failing = True  # up, but answering 503
    breaker = CircuitBreaker(store.client, shop_settings.orders_prefix, "gateway")
    with pipeline() as publisher:
        order_id = place(publisher, ("tee", 2))

        def delayed() -> bool:
            view = track(publisher, order_id, tenant=TENANT)
            return breaker.is_open and view is not None and view.status == "payment_delayed"

        wait_for(delayed, timeout=15, message="the breaker never opened, or the order did not wait")
        gateway.failing = False
        view = settled(publisher, order_id, timeout=30)
    assert view.status == "confirmed"
    assert gateway.ledger.failed >= shop_settings.orders_breaker_threshold
    # Each failed call used an attempt; the waits while the circuit was open did not, nor made a call.
    assert view.steps[2].attempts == gateway.ledger.failed + 1
    assert len(gateway.ledger.charges_of(order_id)) == 1 and store.stock("tee") == 98
    assert mailbox[0].subjects() == [f"Order {order_id} confirmed"]


@pytest.mark.parametrize("circuit", ["closed", "open"])
def test_the_last_try_of_a_charge_gives_the_order_up_releasing_its_stock_and_telling_the_customer(
    pipeline: Callable[..., Any],
    shop_settings: ShopSettings,
    store: ShopStore,
    gateway: FakeGateway,
    mailbox: tuple[Any, int],
    circuit: str,
) -> None:
    """The gateway never came back: the charge's last attempt (its retries spent) compensates."""
    gateway.down()
    known = {"order_id": "order-1", "customer": {"email": "ada@example.com", "name": "Ada"}}
    order = Order.model_validate(
        {**known, "lines": [{"sku": "mug", "quantity": 2}], "amount_cents": 2500, "payment_token": "tok_x"}
    )
    assert store.reserve("order-1", {"mug": 2}).ok
    with pipeline() as publisher:
        shop = Shop.from_settings(shop_settings, publisher)
        if circuit == "open":
            for _ in range(shop_settings.orders_breaker_threshold):
                shop.breaker.failure()
        last = JobContext(
            str(uuid.uuid4()),
            "payment.charge",
            TENANT,
            attempt=PAYMENT_RETRY.max_retries + 1,
            store=publisher.store,
            resources=Resources([shop]),
        )
        with pytest.raises(PermanentJobError) as given_up:
            charge_payment(last, order)
        wait_for(lambda: len(mailbox[0].messages) == 1, timeout=10, message="the customer was not told")
        shop.close()
    assert given_up.value.code == "gateway_unavailable"
    assert (store.stock("mug"), store.reservation("order-1")) == (100, "released")
    assert mailbox[0].subjects() == ["Order order-1: the payment did not go through"]
    assert "unavailable for too long" in mailbox[0].messages[0].get_body(("plain",)).get_content()
