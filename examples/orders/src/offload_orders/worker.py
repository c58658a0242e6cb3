"""The shop's job types: ``dramatiq offload_orders.worker:setup`` serves them.

An order runs as a pipeline, each step publishing the next with the SDK once its own effect is
done::

    order.create ──> inventory.reserve ──> payment.charge ──> email.send (order_confirmation)
                          │ short of stock        │ declined, or the gateway never came back
                          └─ fails: out_of_stock  └─ stock released, email.send (order_payment_failed)

Delivery is at least once, so every step is safe to run twice: the next job is published with an
idempotency key named after the order and the step (``<order>/charge``), which gives back the job
of the first delivery instead of a second one; the reservation is keyed by the order; the charge
carries the gateway idempotency key ``order-<order>``, so a retried charge is never a second one.

Priorities: Offload has three (high, normal, low). Every step here is ``high``; ``payment.charge``,
the "highest" of the BullMQ system this replaces, has in addition a queue of its own
(``payments``), so a flood of new orders on ``orders`` never stands in front of a charge, and a
deployment can give it workers of its own (``--queues payments``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from offload import JobContext, PermanentJobError, Priority, Publisher, RetryPolicy, TransientJobError, WorkerSpec, job
from offload_orders.breaker import CircuitBreaker
from offload_orders.gateway import GatewayUnavailable, PaymentDeclined, PaymentGateway
from offload_orders.models import CreateOrder, Order, OrderPlaced, PaymentCharged, StockReserved
from offload_orders.settings import ShopSettings
from offload_orders.store import ShopStore

if TYPE_CHECKING:
    from offload import Resources

ORDERS_QUEUE = "orders"
PAYMENTS_QUEUE = "payments"

#: Charges are retried for a while (a gateway having a bad minute); an open circuit's waits do not
#: count. When the last retry fails too, the order is given up: its stock released, the customer told.
#: The backoff stops growing at 10 s, about the breaker's cooldown: the breaker is what spares a
#: gateway in trouble, and a longer backoff would only keep orders waiting after it is back.
PAYMENT_RETRY = RetryPolicy(max_retries=8, max_retries_limit=8, min_backoff=1.0, max_backoff=10.0)


@dataclass
class Shop:
    """What the shop's handlers share in one worker process: its store, the gateway, the publisher."""

    settings: ShopSettings
    store: ShopStore
    gateway: PaymentGateway
    breaker: CircuitBreaker
    publisher: Publisher

    @classmethod
    def from_settings(cls, settings: ShopSettings, publisher: Publisher) -> Shop:
        """The shop's clients, built from its settings (the worker's own ``publisher`` publishes next steps)."""
        store = ShopStore.from_url(settings.orders_redis_url.get_secret_value(), settings.orders_prefix)
        breaker = CircuitBreaker(
            store.client,
            settings.orders_prefix,
            "gateway",
            threshold=settings.orders_breaker_threshold,
            window=settings.orders_breaker_window,
            cooldown=settings.orders_breaker_cooldown,
            probe_seconds=int(settings.orders_gateway_timeout) + 1,
        )
        gateway = PaymentGateway(settings.orders_gateway_url, timeout=settings.orders_gateway_timeout)
        return cls(settings=settings, store=store, gateway=gateway, breaker=breaker, publisher=publisher)

    def order_url(self, order_id: str) -> str:
        """The page where the customer follows the order."""
        return f"{self.settings.orders_public_url.rstrip('/')}/orders/status/{order_id}"

    def close(self) -> None:
        """Close the shop's own connections (the publisher is the worker's)."""
        self.gateway.close()
        self.store.close()


def resources(settings: ShopSettings, publisher: Publisher, given: Resources) -> Iterator[object]:
    """The worker's :class:`Shop` (a test may hand in its own)."""
    yield given.find(Shop) or Shop.from_settings(settings, publisher)


@job("order.create", queue=ORDERS_QUEUE, priority=Priority.HIGH, time_limit=30)
def create_order(ctx: JobContext, payload: CreateOrder) -> OrderPlaced:
    """Price a checkout's cart and start its order (the order's id is this job's id)."""
    shop = ctx.resource(Shop)
    prices = shop.store.prices([line.sku for line in payload.lines])
    unknown = sorted(sku for sku, price in prices.items() if price is None)
    if unknown:
        raise PermanentJobError(f"The shop does not sell {', '.join(unknown)}.", code="unknown_sku")
    amount = sum((prices[line.sku] or 0) * line.quantity for line in payload.lines)
    order = Order(
        order_id=ctx.job_id,
        customer=payload.customer,
        lines=payload.lines,
        amount_cents=amount,
        payment_token=payload.payment_token,
    )
    reserve = shop.publisher.publish(
        "inventory.reserve",
        order.model_dump(mode="json"),
        tenant=ctx.tenant,
        idempotency_key=f"{ctx.job_id}/reserve",
    )
    return OrderPlaced(order_id=ctx.job_id, amount_cents=amount, next_job=reserve.job_id)


@job("inventory.reserve", queue=ORDERS_QUEUE, priority=Priority.HIGH, time_limit=30)
def reserve_stock(ctx: JobContext, payload: Order) -> StockReserved:
    """Reserve the stock of every line of an order, or fail it if one is short (nothing is taken then)."""
    shop = ctx.resource(Shop)
    reservation = shop.store.reserve(payload.order_id, {line.sku: line.quantity for line in payload.lines})
    if not reservation.ok:
        raise PermanentJobError(f"Not enough {reservation.short_sku} in stock.", code="out_of_stock")
    if reservation.state == "released":
        raise PermanentJobError("The order was given up and its stock released.", code="order_released")
    charge = shop.publisher.publish(
        "payment.charge",
        payload.model_dump(mode="json"),
        tenant=ctx.tenant,
        idempotency_key=f"{payload.order_id}/charge",
    )
    return StockReserved(order_id=payload.order_id, next_job=charge.job_id)


@job(
    "payment.charge",
    queue=PAYMENTS_QUEUE,
    priority=Priority.HIGH,
    retry=PAYMENT_RETRY,
    time_limit=60,
)
def charge_payment(ctx: JobContext, payload: Order) -> PaymentCharged:
    """Charge an order through the payment gateway, then send its confirmation; release its stock if it fails."""
    shop = ctx.resource(Shop)
    final = ctx.attempt > PAYMENT_RETRY.max_retries  # the retries are spent: this try is the order's last
    try:
        shop.breaker.check()  # an open circuit holds the job back without trying (and without using a retry)
    except TransientJobError as paused:
        if final:  # (Offload counts held-back tries as attempts too once a job has waited long enough)
            give_up(ctx, shop, payload, "unavailable")
            raise PermanentJobError(paused.message, code="gateway_unavailable") from None
        raise
    try:
        charge = shop.gateway.charge(
            amount_cents=payload.amount_cents,
            currency=payload.currency,
            token=payload.payment_token,
            reference=payload.order_id,
            idempotency_key=f"order-{payload.order_id}",
        )
    except PaymentDeclined as declined:
        shop.breaker.success()  # the gateway answered: it is up
        give_up(ctx, shop, payload, "declined")
        raise PermanentJobError(str(declined), code="payment_declined") from None
    except GatewayUnavailable as unavailable:
        shop.breaker.failure()
        if final:  # the order cannot wait any longer
            give_up(ctx, shop, payload, "unavailable")
            raise PermanentJobError(str(unavailable), code="gateway_unavailable") from None
        raise TransientJobError(str(unavailable), code="gateway_unavailable") from None
    shop.breaker.success()
    shop.store.sell(payload.order_id)
    confirmation = shop.publisher.publish(
        "email.send",
        {
            "to": [{"email": payload.customer.email, "name": payload.customer.name}],
            "template": "order_confirmation",
            "vars": {
                "name": payload.customer.name,
                "order_id": payload.order_id,
                "total": f"{payload.amount_cents / 100:.2f} {payload.currency}",
                "order_url": shop.order_url(payload.order_id),
            },
        },
        tenant=ctx.tenant,
        idempotency_key=f"{payload.order_id}/confirmation",
    )
    return PaymentCharged(
        order_id=payload.order_id, charge_id=charge.id, amount_cents=charge.amount_cents, next_job=confirmation.job_id
    )


def give_up(ctx: JobContext, shop: Shop, order: Order, reason: str) -> None:
    """Compensate a payment that failed for good: release the order's stock and tell the customer (once)."""
    shop.store.release(order.order_id)
    shop.publisher.publish(
        "email.send",
        {
            "to": [{"email": order.customer.email, "name": order.customer.name}],
            "template": "order_payment_failed",
            "vars": {
                "name": order.customer.name,
                "order_id": order.order_id,
                "reason": reason,
                "order_url": shop.order_url(order.order_id),
            },
        },
        tenant=ctx.tenant,
        idempotency_key=f"{order.order_id}/payment-failed",
    )
    ctx.log(f"Payment {reason}: stock released, customer emailed.")


#: The worker: ``dramatiq offload_orders.worker:setup`` consumes ``orders`` and ``payments`` (and ``system``).
SPEC = WorkerSpec(
    name="orders",
    jobs=(create_order, reserve_stock, charge_payment),
    settings=ShopSettings,
    resources=resources,
)
setup = SPEC.setup
