"""The shop's web app: a checkout that answers 202 at once, and order pages that follow the jobs.

::

    POST /checkout                    {"email", "name", "items": [{"sku", "quantity"}], "payment_token"}
                                      (Idempotency-Key: optional) -> 202 {"order_id", "status_url", "events_url"}
    GET  /orders/status/<order_id>    the order's progress and outcome (JSON)
    GET  /orders/status/<order_id>/events   the same, live, as Server-Sent Events

The checkout only validates the cart and publishes ``order.create`` with the SDK; payment, stock
and email run as jobs. The order pages read the jobs through the SDK on the server, so a browser
never holds an Offload API key (and the shop needs none either).

Run it as users would: ``gunicorn -c python:offload_orders.gunicorn_conf offload_orders.wsgi:app``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import redis
from flask import Flask, Response, current_app, jsonify, render_template, request, stream_with_context, url_for
from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError

from offload import OffloadError, Publisher
from offload_orders.models import Name, PaymentToken, Sku
from offload_orders.settings import ShopSettings
from offload_orders.store import ShopStore
from offload_orders.tracking import OrderView, follow, track

#: Seconds a checkout waits for the broker's confirm before it answers 503 (it never answers 202
#: for an order the broker may not have).
CHECKOUT_DEADLINE = 1.0
EXTENSION = "offload_orders"
#: Milliseconds a browser turned away from a full process waits before it asks for the stream again.
BUSY_RETRY_MS = 5000


class CheckoutItem(BaseModel):
    """One line of the cart as the browser sends it."""

    model_config = ConfigDict(strict=True, extra="forbid")

    sku: Sku
    quantity: int = Field(ge=1, le=100)


class Checkout(BaseModel):
    """The body of ``POST /checkout``."""

    model_config = ConfigDict(strict=True, extra="forbid")

    email: EmailStr = Field(max_length=254)
    name: Name
    items: list[CheckoutItem] = Field(min_length=1, max_length=20)
    payment_token: PaymentToken


class Services:
    """What the app's requests share in one process.

    The SDK's publisher, the shop's store, and the count of open event streams (each holds one of
    the process's threads).
    """

    def __init__(self, settings: ShopSettings, publisher: Publisher, store: ShopStore) -> None:
        self.settings = settings
        self.publisher = publisher
        self.store = store
        self.streams = threading.BoundedSemaphore(settings.orders_max_streams)


def create_app(
    settings: ShopSettings | None = None, *, publisher: Publisher | None = None, store: ShopStore | None = None
) -> Flask:
    """The shop's app, from ``settings`` (``OFFLOAD_*`` variables by default)."""
    from offload_orders.worker import SPEC

    settings = settings or ShopSettings()
    publisher = publisher or Publisher.from_settings(settings, local=SPEC.contracts)
    store = store or ShopStore.from_url(settings.orders_redis_url.get_secret_value(), settings.orders_prefix)
    app = Flask(__name__)
    app.extensions[EXTENSION] = Services(settings, publisher, store)
    app.add_url_rule("/checkout", view_func=checkout, methods=["POST"])
    app.add_url_rule("/orders/status/<order_id>", view_func=status)
    app.add_url_rule("/orders/status/<order_id>/events", view_func=events)
    app.add_url_rule("/healthz", view_func=lambda: {"ok": True})
    app.register_error_handler(404, lambda _: problem(404, "not_found", "No such page."))
    app.register_error_handler(405, lambda _: problem(405, "method_not_allowed", "Method not allowed here."))
    app.register_error_handler(OffloadError, offload_error)
    app.register_error_handler(redis.RedisError, store_unavailable)
    app.register_error_handler(500, lambda _: problem(500, "internal_error", "Something went wrong on our side."))
    return app


def services() -> Services:
    """The current app's shared services."""
    found: Services = current_app.extensions[EXTENSION]
    return found


def problem(status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None) -> Response:
    """A JSON error: ``{"error": {"code", "message", "errors": [{"field", "problem"}]}}``."""
    body: dict[str, Any] = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    response = jsonify(error=body)
    response.status_code = status
    return response


def offload_error(exc: OffloadError) -> Response:
    """An SDK error as an answer: 4xx as the SDK classes it, 503 with Retry-After when Offload is unavailable."""
    status = int(getattr(exc, "status", 503))
    response = problem(status, exc.code, exc.message, getattr(exc, "errors", None))
    if status == 503:
        response.headers["Retry-After"] = str(getattr(exc, "retry_after", 2))
    return response


def store_unavailable(_exc: redis.RedisError) -> Response:
    """The shop's own store did not answer: 503, try again shortly."""
    response = problem(503, "store_unavailable", "The shop's store is unavailable; try again shortly.")
    response.headers["Retry-After"] = "2"
    return response


def checkout() -> Response:
    """Accept a cart: validate it, publish ``order.create``, answer 202 with where to follow the order."""
    shop = services()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return problem(400, "invalid_json", "The body must be a JSON object (Content-Type: application/json).")
    try:
        cart = Checkout.model_validate(body)
    except ValidationError as exc:
        return problem(422, "invalid_request", "The checkout is not valid.", _field_errors(exc))
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 200:
        return problem(422, "invalid_request", "Idempotency-Key must be 1 to 200 characters.")
    quantities: dict[str, int] = {}
    for item in cart.items:  # a product listed twice is one line
        quantities[item.sku] = quantities.get(item.sku, 0) + item.quantity
    prices = shop.store.prices(list(quantities))
    unknown = [
        {"field": f"items[{index}].sku", "problem": f"the shop does not sell {item.sku!r}"}
        for index, item in enumerate(cart.items)
        if prices.get(item.sku) is None
    ]
    if unknown:
        return problem(422, "unknown_sku", "Some products are not for sale.", unknown)
    too_many = [
        {"field": f"items[{index}].quantity", "problem": f"at most 100 of {item.sku!r} per order, in all"}
        for index, item in enumerate(cart.items)
        if quantities[item.sku] > 100
    ]
    if too_many:
        return problem(422, "invalid_request", "At most 100 of one product per order.", too_many)
    order = {  # a CreateOrder, which the SDK validates against order.create's contract on submission
        "customer": {"email": cart.email, "name": cart.name},
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in quantities.items()],
        "payment_token": cart.payment_token,
    }
    submitted = shop.publisher.submit(
        {"type": "order.create", "payload": order},
        tenant=shop.settings.orders_tenant,
        idempotency_key=key,
        deadline=time.monotonic() + CHECKOUT_DEADLINE,
    )
    status_url = url_for("status", order_id=submitted.job_id)
    response = jsonify(
        order_id=submitted.job_id,
        status="received",
        replayed=submitted.replayed,
        status_url=status_url,
        events_url=url_for("events", order_id=submitted.job_id),
    )
    response.status_code = 202
    response.headers["Location"] = status_url
    return response


def status(order_id: str) -> Response:
    """The order's progress and outcome: JSON, or for a browser a page that follows the event stream."""
    shop = services()
    view = track(shop.publisher, order_id, tenant=shop.settings.orders_tenant) if _is_uuid(order_id) else None
    if view is None:
        return problem(404, "order_not_found", "No such order.")
    if request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
        events_url = url_for("events", order_id=order_id)  # templates/order.html follows it
        return Response(render_template("order.html", order_id=order_id, view=view, events_url=events_url))
    return jsonify(view.as_json())


def events(order_id: str) -> Response:
    """The order's progress as Server-Sent Events: an ``order`` event per change, then ``end``.

    A stream holds a thread while it is open, so a process serves at most ``orders_max_streams``
    at once and keeps its other threads for checkouts. Past that, the answer is the order as it is
    and ``retry: 5000``: the browser's ``EventSource`` asks again in five seconds (polling, in effect).
    """
    shop = services()
    tenant = shop.settings.orders_tenant
    view = track(shop.publisher, order_id, tenant=tenant) if _is_uuid(order_id) else None
    if view is None:
        return problem(404, "order_not_found", "No such order.")

    def stream() -> Iterator[str]:
        held = not view.done  # a done order's stream is one event: no slot needed
        if held and not shop.streams.acquire(blocking=False):
            yield f"retry: {BUSY_RETRY_MS}\n"
            yield _order_event(view)
            return
        try:
            last = view
            for last in follow(shop.publisher, order_id, tenant=tenant, timeout=shop.settings.orders_stream_seconds):
                yield _order_event(last)
            if last.done:
                yield "event: end\ndata: {}\n\n"
        except OffloadError as exc:
            yield f"event: error\ndata: {json.dumps({'code': exc.code, 'message': exc.message})}\n\n"
        finally:
            if held:
                shop.streams.release()

    return _event_stream(stream_with_context(stream()))


def _order_event(view: OrderView) -> str:
    return f"event: order\ndata: {json.dumps(view.as_json(), separators=(',', ':'))}\n\n"


def _event_stream(body: Iterator[str]) -> Response:
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def _field_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as ``{"field": "items[0].sku", "problem": ...}``."""
    found = []
    for error in exc.errors(include_url=False, include_input=False):
        field = ""
        for part in error["loc"]:
            field += f"[{part}]" if isinstance(part, int) else f".{part}" if field else str(part)
        found.append({"field": field or "body", "problem": error["msg"]})
    return found


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
