"""A bounded load generator for the shop's checkout: ``python -m offload_orders.loadgen URL``.

It sends ``--orders`` checkouts from ``--concurrency`` clients, each with a keep-alive connection
of its own, all released at once (a burst, as when a sale opens), or with ``--rate`` at that many
per second (open loop: checkout ``n`` is due ``n / rate`` seconds after the start, and its latency
counts from then, so a slow server cannot hide its queue by slowing the clients down), and prints
one JSON document:
every answer's status, latency (ms, from sending the request to reading the whole answer) and
order id, and p50/p99/max of the 202s. It runs in a process of its own so that what it measures
is the server, over HTTP, not a client sharing an interpreter with the workers.

Carts: one of ``--sku`` each; every ``--declined-every``-th pays with a card the fake gateway
declines (0: none).
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


def cart(number: int, sku: str, declined_every: int) -> dict[str, Any]:
    """The ``number``-th checkout's body."""
    declined = declined_every and number % declined_every == declined_every - 1
    return {
        "email": f"customer{number}@example.com",
        "name": f"Customer {number}",
        "items": [{"sku": sku, "quantity": 1}],
        "payment_token": "tok_declined" if declined else "tok_visa",
    }


def run(url: str, *, orders: int, concurrency: int, sku: str, declined_every: int, rate: float = 0.0) -> dict[str, Any]:
    """Send the checkouts; the answers and their latencies."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    answers: list[dict[str, Any]] = [{} for _ in range(orders)]
    next_order = iter(range(orders))
    lock = threading.Lock()
    start = threading.Barrier(concurrency)
    origin: list[float] = []

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        if start.wait() == 0:
            origin.append(time.perf_counter())
        start.wait()
        while True:
            with lock:
                number = next(next_order, None)
            if number is None:
                break
            body = json.dumps(cart(number, sku, declined_every))
            began = time.perf_counter()
            if rate:
                began = origin[0] + number / rate
                time.sleep(max(0.0, began - time.perf_counter()))
            try:
                connection.request("POST", "/checkout", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                data = response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=30)
                data, status = json.dumps({"error": type(exc).__name__}).encode(), 0
            latency = (time.perf_counter() - began) * 1000
            answer = json.loads(data or b"{}")
            answers[number] = {"status": status, "ms": round(latency, 3), "order_id": answer.get("order_id")}
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    accepted = [a["ms"] for a in answers if a.get("status") == 202]
    return {
        "orders": orders,
        "concurrency": concurrency,
        "rate": rate,
        "seconds": round(elapsed, 3),
        "accepted": len(accepted),
        "p50_ms": round(percentile(accepted, 0.50), 2),
        "p99_ms": round(percentile(accepted, 0.99), 2),
        "max_ms": round(max(accepted, default=0.0), 2),
        "answers": answers,
    }


def main() -> None:
    """Parse the command line, run, print the JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the shop's base URL, on loopback (http://127.0.0.1:8080)")
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--sku", default="mug")
    parser.add_argument("--declined-every", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.0, help="checkouts per second (open loop); 0: all at once")
    args = parser.parse_args()
    if urlsplit(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the load generator only sends to loopback")
    result = run(
        args.url,
        orders=args.orders,
        concurrency=min(args.concurrency, args.orders),
        sku=args.sku,
        declined_every=args.declined_every,
        rate=args.rate,
    )
    print(json.dumps(result))  # noqa: T201


if __name__ == "__main__":
    main()
