"""``python -m bench.hook_receiver --port P --out FILE``: the webhook receiver the webhook measurement calls.

A ``ThreadingHTTPServer`` on 127.0.0.1 in a process of its own, speaking HTTP/1.1 with keep-alive
(the worker's ``requests.Session`` reuses its connections, so a thread per connection is a handful
of threads): ``POST /hook`` reads the body and answers 200 with an empty body; ``GET /healthz``
answers 200 so the benchmark knows it is up. It verifies nothing (signatures are the worker's cost,
not the receiver's). When stopped (SIGTERM or SIGINT) it writes how many POSTs it answered, and how
many carried a ``webhook-id`` seen before (redeliveries), to ``FILE`` as JSON.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.serve import serve_until_signalled, server_args


class Counts:
    """What the receiver answered (shared by the handler threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: set[str] = set()
        self.posts = 0

    def add(self, webhook_id: str) -> None:
        """Count one delivery."""
        with self.lock:
            self.posts += 1
            self.ids.add(webhook_id)

    def as_dict(self) -> dict[str, int]:
        """JSON form."""
        with self.lock:
            return {"posts": self.posts, "distinct": len(self.ids), "repeated": self.posts - len(self.ids)}


COUNTS = Counts()


class Handler(BaseHTTPRequestHandler):
    """200 to every POST, after reading its body (the connection stays usable)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        """Read the delivery and answer 200."""
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        COUNTS.add(self.headers.get("webhook-id") or "")
        self._empty(200)

    def do_GET(self) -> None:
        """``/healthz``: 200 while the process answers."""
        self._empty(200 if self.path == "/healthz" else 404)

    def _empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, _format: str, *_args: object) -> None:
        """Log nothing (one line per request would cost more than the answer)."""


def main() -> None:
    """Serve until SIGTERM or SIGINT, then write the counts."""
    args = server_args("python -m bench.hook_receiver")
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True  # keep-alive connections the worker never closed must not hold up the exit
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    serve_until_signalled(args.port, args.out, start=thread.start, stop=server.shutdown, counts=COUNTS.as_dict)


if __name__ == "__main__":
    main()
