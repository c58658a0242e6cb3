"""The shop over HTTP, served by gunicorn as users run it: checkout, order pages, their live stream."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from offload_orders.app import create_app
from offload_orders.settings import ShopSettings
from offload_orders.store import ShopStore
from offload_orders.testing import free_port, shop_server
from offload_orders.worker import SPEC

from offload import Settings
from offload.testing import broker_url_for_tests, redis_url_for_tests

#: 101 of one product, in two lines.
TOO_MANY = {
    "email": "ada@example.com",
    "name": "Ada",
    "items": [{"sku": "mug", "quantity": 60}, {"sku": "mug", "quantity": 41}],
    "payment_token": "tok_visa",
}
CART = {
    "email": "ada@example.com",
    "name": "Ada",
    "items": [{"sku": "mug", "quantity": 2}],
    "payment_token": "tok_visa",
}


@pytest.fixture(scope="module")
def shop_process() -> Iterator[str]:
    """One gunicorn for the module's tests: it keeps nothing between requests but its connections."""
    settings = ShopSettings(
        env="test",
        broker_url=broker_url_for_tests(),
        redis_url=redis_url_for_tests(),
        orders_redis_url=redis_url_for_tests(),
        orders_prefix="orders-test:",
    )
    with shop_server(settings, free_port()) as base:
        yield base


@pytest.fixture
def shop(shop_process: str, store: ShopStore) -> str:
    """The shop's URL, its products stocked."""
    return shop_process


def events(response: requests.Response) -> Iterator[tuple[str, Any]]:
    """The (event, data) pairs of a Server-Sent Events response, as they arrive."""
    kind, data = "message", ""
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            yield kind, json.loads(data)
            kind, data = "message", ""


def test_a_checkout_is_accepted_at_once_and_its_order_followed_live_to_the_end(
    shop: str, pipeline: Callable[..., Any], mailbox: tuple[Any, int]
) -> None:
    with pipeline():
        answer = requests.post(f"{shop}/checkout", json=CART, timeout=5)
        assert answer.status_code == 202, answer.text
        order = answer.json()
        assert answer.headers["Location"] == order["status_url"] == f"/orders/status/{order['order_id']}"
        with requests.get(f"{shop}{order['events_url']}", stream=True, timeout=30) as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            seen = list(events(stream))
        page = requests.get(f"{shop}{order['status_url']}", timeout=5).json()
        html = requests.get(f"{shop}{order['status_url']}", headers={"Accept": "text/html"}, timeout=5)
    statuses = [data["status"] for kind, data in seen if kind == "order"]
    assert statuses[-1] == "confirmed" and seen[-1][0] == "end"
    canonical = ["received", "reserving_stock", "awaiting_payment", "paid", "confirmed"]
    assert sorted(set(statuses), key=statuses.index) == [s for s in canonical if s in statuses]  # never backwards
    assert all(a != b for a, b in zip(seen, seen[1:], strict=False))  # an event per change, none twice
    assert page["status"] == "confirmed" and page["done"] is True and page["amount_cents"] == 2500
    assert [step["type"] for step in page["steps"]] == [*(job.name for job in SPEC.jobs), "email.send"]
    assert mailbox[0].subjects() == [f"Order {order['order_id']} confirmed"]
    assert html.headers["Content-Type"].startswith("text/html")
    assert f'new EventSource("{order["events_url"]}")' in html.text and "confirmed" in html.text


def test_the_same_idempotency_key_gives_the_same_order_and_another_cart_under_it_is_refused(shop: str) -> None:
    first = requests.post(f"{shop}/checkout", json=CART, headers={"Idempotency-Key": "cart-1"}, timeout=5)
    again = requests.post(f"{shop}/checkout", json=CART, headers={"Idempotency-Key": "cart-1"}, timeout=5)
    other = requests.post(
        f"{shop}/checkout", json={**CART, "name": "Bob"}, headers={"Idempotency-Key": "cart-1"}, timeout=5
    )
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["order_id"] == first.json()["order_id"] and again.json()["replayed"] is True
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ("not json", 400, "invalid_json", None),
        ({**CART, "email": "not-an-address"}, 422, "invalid_request", "email"),
        ({**CART, "items": []}, 422, "invalid_request", "items"),
        ({**CART, "items": [{"sku": "mug", "quantity": 0}]}, 422, "invalid_request", "items[0].quantity"),
        ({**CART, "items": [{"sku": "mug", "quantity": "2"}]}, 422, "invalid_request", "items[0].quantity"),
        (
            {**CART, "items": [{"sku": "mug", "quantity": 1}, {"sku": "unicorn", "quantity": 1}]},
            422,
            "unknown_sku",
            "items[1].sku",
        ),
        ({**CART, "name": "Ada\r\nBcc: x@example.com"}, 422, "invalid_request", "name"),
        ({**CART, "payment_token": "4242424242424242"}, 422, "invalid_request", "payment_token"),
        ({**CART, "coupon": "FREE"}, 422, "invalid_request", "coupon"),
        (
            {**CART, "items": [{"sku": "mug", "quantity": 60}, {"sku": "mug", "quantity": 41}]},
            422,
            "invalid_request",
            "items[1].quantity",
        ),
    ],
)
def test_a_bad_checkout_is_refused_naming_the_problem(
    shop: str, body: Any, status: int, code: str, field: str | None
) -> None:
    if isinstance(body, str):
        answer = requests.post(f"{shop}/checkout", data=body, headers={"Content-Type": "application/json"}, timeout=5)
    else:
        answer = requests.post(f"{shop}/checkout", json=body, timeout=5)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["code"] == code
    if field is not None:
        assert field in [item["field"] for item in error["errors"]]
    assert "Traceback" not in answer.text


def test_an_unknown_order_is_a_404_in_json(shop: str) -> None:
    for path in (
        "/orders/status/nope",
        "/orders/status/6f1c1b1e-8d1d-4c3e-9b8e-6a2b1f0c9d7e",
        "/orders/status/nope/events",
    ):
        answer = requests.get(f"{shop}{path}", timeout=5)
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "order_not_found")
    assert requests.get(f"{shop}/checkout", timeout=5).status_code == 405


def test_a_checkout_while_the_shops_store_is_down_is_a_503_in_json(offload_settings: Settings) -> None:
    """The shop's own Redis refuses connections (a port nothing listens on): 503 with Retry-After, no trace."""
    settings = ShopSettings(
        **{**offload_settings.model_dump(), "orders_redis_url": f"redis://127.0.0.1:{free_port()}/0"}
    )
    app = create_app(settings)
    answer = app.test_client().post("/checkout", json=CART)
    app.extensions["offload_orders"].publisher.close()
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "2"
    assert answer.get_json()["error"]["code"] == "store_unavailable" and "Traceback" not in answer.get_data(
        as_text=True
    )


def test_a_process_with_all_its_stream_slots_taken_tells_the_next_browser_to_come_back(
    offload_settings: Settings, store: ShopStore
) -> None:
    """Streams hold threads: past ``orders_max_streams`` a browser gets the order now and ``retry: 5000``."""
    settings = ShopSettings(
        **{
            **offload_settings.model_dump(),
            "orders_redis_url": offload_settings.redis_url,
            "orders_prefix": store.prefix,
            "orders_max_streams": 1,
            "orders_stream_seconds": 3.0,
        }
    )
    app = create_app(settings)
    client = app.test_client()
    order = client.post("/checkout", json=CART).get_json()  # no worker runs: it stays received
    first = client.get(order["events_url"], buffered=False)
    opened = _text(next(iter(first.response)))  # the stream has started and holds the process's one slot
    busy = client.get(order["events_url"]).get_data(as_text=True)
    first.close()
    again = client.get(order["events_url"], buffered=False)
    again_opened = _text(next(iter(again.response)))
    again.close()
    app.extensions["offload_orders"].publisher.close()
    assert '"status":"received"' in opened
    assert busy.startswith("retry: 5000\n") and '"status":"received"' in busy
    assert "retry:" not in again_opened  # the first stream's slot was given back when it closed


def _text(chunk: object) -> str:
    return chunk.decode() if isinstance(chunk, bytes) else str(chunk)
