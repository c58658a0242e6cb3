"""A real HTTP receiver on 127.0.0.1 that records deliveries and answers as a test scripts it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import pytest

from tests.helpers import serve_http


@dataclass
class Receiver:
    """What arrived, and the answers to give in turn (the last one repeats)."""

    port: int = 0
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=lambda: [(200, {})])
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/offload"

    def next_answer(self) -> tuple[int, dict[str, str]]:
        with self.lock:
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status, headers = state.next_answer()
            if status == 0:  # "hang": answer nothing for a while
                time.sleep(float(headers.get("seconds", "3")))
                status, headers = 200, {}
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    with serve_http(Handler) as state.port:
        yield state
