"""A local HTTP server for URL sources (report rows, images): serves one body, counts requests."""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import pytest

from tests.helpers import serve_http


@dataclass
class Source:
    """A local HTTP data source: serves ``body`` at any path, and counts connections."""

    port: int = 0
    body: bytes = b""
    gzip: bool = False
    drip_seconds: float = 0.0
    chunked: bool = False
    #: Send half the body under the whole one's Content-Length, then close the connection.
    truncate: bool = False
    status: int = 200
    #: Extra response headers (e.g. ``Location`` with a 3xx status).
    headers: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    paths: list[str] = field(default_factory=list)

    def url(self, path: str = "/rows") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def source() -> Iterator[Source]:
    state = Source()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            state.requests += 1
            state.paths.append(self.path)
            body = gzip.compress(state.body) if state.gzip else state.body
            self.send_response(state.status)
            for name, value in state.headers.items():
                self.send_header(name, value)
            if state.gzip:
                self.send_header("Content-Encoding", "gzip")
            if state.drip_seconds:
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for offset in range(len(body)):
                    self.wfile.write(body[offset : offset + 1])
                    self.wfile.flush()
                    time.sleep(state.drip_seconds)
                return
            if state.truncate:
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return
            if state.chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for offset in range(0, len(body), 65536):
                    piece = body[offset : offset + 65536]
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
                return
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serve_http(Handler) as state.port:
        yield state
