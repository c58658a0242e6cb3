"""A fake payment gateway on loopback, for demos and tests: ``python -m offload_orders.fake_gateway``.

It speaks the API :mod:`offload_orders.gateway` expects, and can be made slow, failing or down,
so that a test can watch the shop behave when its gateway misbehaves. It keeps a ledger of
charges by idempotency key and by order, so "charged twice" is a number a test can read.

Cards: a token containing ``declined`` is refused (402 ``card_declined``); any other is charged.
Never put it in front of real payments: it charges nothing and checks nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class LedgerCharge:
    """One charge the gateway made."""

    id: str
    key: str
    reference: str
    amount_cents: int


@dataclass
class Ledger:
    """Every charge, by idempotency key; and how many requests came."""

    by_key: dict[str, LedgerCharge] = field(default_factory=dict)
    requests: int = 0
    declined: int = 0
    #: Requests answered 503 while :attr:`FakeGateway.failing`.
    failed: int = 0

    def charges_of(self, reference: str) -> list[LedgerCharge]:
        """The charges made for one order."""
        return [charge for charge in self.by_key.values() if charge.reference == reference]

    def charged_twice(self) -> list[str]:
        """The orders charged more than once (under different keys): this must stay empty."""
        counts: dict[str, int] = {}
        for charge in self.by_key.values():
            counts[charge.reference] = counts.get(charge.reference, 0) + 1
        return sorted(reference for reference, count in counts.items() if count > 1)


class FakeGateway:
    """The gateway's server and the knobs a test turns.

    Args:
        port: the port on 127.0.0.1 (0: any free one; it keeps it across :meth:`down` and :meth:`up`).
    """

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.ledger = Ledger()
        #: Seconds every charge takes before it is answered (a slow gateway; past the client's timeout, a timeout).
        self.delay = 0.0
        #: While true, charges are answered 503 (the gateway is up but failing).
        self.failing = False
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        #: The open client connections, closed by :meth:`down` (a gateway that goes down drops them all).
        self._connections: set[socket.socket] = set()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> FakeGateway:
        """Start serving (again, on the same port after :meth:`down`)."""
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-gateway", daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop serving: open connections are dropped, new ones refused until :meth:`up`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeGateway:
        return self.up()

    def __exit__(self, *_: object) -> None:
        self.down()

    def charge(self, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Answer one charge request: (HTTP status, JSON body)."""
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.ledger.requests += 1
            if self.failing:
                self.ledger.failed += 1
                return 503, {"code": "unavailable"}
            if not key or not isinstance(body.get("amount_cents"), int) or not isinstance(body.get("reference"), str):
                return 400, {"code": "invalid_request"}
            known = self.ledger.by_key.get(key)
            if known is not None:
                return 200, {"id": known.id, "status": "succeeded", "amount_cents": known.amount_cents}
            if "declined" in str(body.get("token", "")):
                self.ledger.declined += 1
                return 402, {"code": "card_declined"}
            charge = LedgerCharge(f"ch_{next(self._ids)}", key, body["reference"], body["amount_cents"])
            self.ledger.by_key[key] = charge
            return 201, {"id": charge.id, "status": "succeeded", "amount_cents": charge.amount_cents}


def _handler(gateway: FakeGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with gateway._lock:
                gateway._connections.add(self.connection)

        def finish(self) -> None:
            with gateway._lock:
                gateway._connections.discard(self.connection)
            super().finish()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                body = None
            if self.path != "/charges" or not isinstance(body, dict):
                status, answer = 404 if self.path != "/charges" else 400, {"code": "invalid_request"}
            else:
                status, answer = gateway.charge(self.headers.get("Idempotency-Key", ""), body)
            encoded = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read the ledger, not an access log."""

    return Handler


def main() -> None:
    """Serve the fake gateway in the foreground."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8099)
    port = parser.parse_args().port
    with FakeGateway(port):
        print(f"Fake payment gateway on http://127.0.0.1:{port} (Ctrl-C stops it)")  # noqa: T201
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
