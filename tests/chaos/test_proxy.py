"""The fault proxy itself, against a local echo server: pass, latency, blackhole, reset."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.chaos.proxy import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fault = FaultProxy(server.server_address[1])
    yield fault
    fault.close()
    server.shutdown()
    server.server_close()


def _talk(port: int, payload: bytes, timeout: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        return sock.recv(65536)


def test_pass_and_latency_forward(proxy: FaultProxy) -> None:
    assert _talk(proxy.port, b"hello") == b"hello"
    proxy.set("latency", latency_ms=150)
    started = time.monotonic()
    assert _talk(proxy.port, b"slow") == b"slow"
    assert time.monotonic() - started >= 0.3  # held both ways


def test_a_blackhole_is_silence_not_a_close(proxy: FaultProxy) -> None:
    proxy.set("blackhole")
    with pytest.raises(TimeoutError):
        _talk(proxy.port, b"anyone?", timeout=0.5)
    proxy.set("pass")
    assert _talk(proxy.port, b"back") == b"back"


def test_reset_cuts_open_connections(proxy: FaultProxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as sock:
        sock.sendall(b"one")
        assert sock.recv(100) == b"one"
        proxy.set("reset")
        time.sleep(0.1)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            sock.sendall(b"two")
            if not sock.recv(100):
                raise ConnectionResetError("closed")
    with pytest.raises((ConnectionResetError, ConnectionRefusedError, OSError)):
        _talk(proxy.port, b"three")
