"""Loopback sinks and probes the F15–F20 scenarios share: webhook receivers that misbehave on cue,
a listener that only counts connections (an SSRF target), an SMTP sink to start and stop, and the
memory of processes the test started (reliability-security.md §6.0, "Local sinks").
"""

from __future__ import annotations

import gc
import socket
import threading
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from tests.helpers import free_port, serve_http
from tests.support.email import Sink


@dataclass(frozen=True)
class Hook:
    """One request a receiver got: its Standard Webhooks headers and when it arrived (Unix seconds)."""

    webhook_id: str
    timestamp: int
    arrived: float
    headers: dict[str, str]
    body: bytes


#: How a receiver answers the ``n``-th request (from 1) carrying one webhook-id: status, headers, and
#: either a body, or ("hang", seconds) before a 200, or ("stream", bytes) of zeros.
Answer = tuple[int, dict[str, str], bytes | tuple[str, float]]


@dataclass
class HookReceiver:
    """A webhook receiver on 127.0.0.1 of its own (so that each has its own circuit breaker) that
    answers as ``answer(n)`` says for the ``n``-th delivery of a webhook-id, and records each one.

    ``acted`` counts, per webhook-id, the deliveries the receiver acted on (answered 2xx): more than
    one for an id is a double effect (the receiver would have to dedupe by webhook-id).
    """

    answer: Callable[[int], Answer]
    hooks: list[Hook] = field(default_factory=list)
    acted: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/offload"

    def by_id(self) -> dict[str, list[Hook]]:
        """The deliveries of each webhook-id, in arrival order."""
        found: dict[str, list[Hook]] = {}
        with self.lock:
            for hook in self.hooks:
                found.setdefault(hook.webhook_id, []).append(hook)
        return found

    @contextmanager
    def running(self) -> Iterator[HookReceiver]:
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                hook = Hook(
                    headers.get("webhook-id", ""),
                    int(headers.get("webhook-timestamp", "0")),
                    time.time(),
                    headers,
                    body,
                )
                with state.lock:
                    state.hooks.append(hook)
                    n = sum(1 for h in state.hooks if h.webhook_id == hook.webhook_id)
                status, extra, content = state.answer(n)
                try:
                    if isinstance(content, tuple) and content[0] == "hang":
                        time.sleep(float(content[1]))
                        content = b""
                    self.send_response(status)
                    for name, value in extra.items():
                        self.send_header(name, value)
                    if isinstance(content, tuple):  # ("stream", size): that many zeros, as fast as taken
                        size = int(content[1])
                        self.send_header("Content-Length", str(size))
                        self.end_headers()
                        chunk, sent = b"\0" * 65536, 0
                        while sent < size:
                            self.wfile.write(chunk[: size - sent])
                            sent += len(chunk)
                    else:
                        self.send_header("Content-Length", str(len(content)))
                        self.end_headers()
                        self.wfile.write(content)
                except OSError:
                    self.close_connection = True
                    return  # the client gave up (a timeout, or a body it would not read)
                if 200 <= status < 300:
                    with state.lock:
                        state.acted[hook.webhook_id] += 1

            def log_message(self, format: str, *args: object) -> None:
                return

        with serve_http(Handler) as self.port:
            yield self


class CountingListener:
    """A loopback TCP listener that accepts, counts and closes connections: the stand-in for an
    internal service (Redis, a metadata endpoint) that an SSRF would reach."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.closed = True
        self.sock.close()


class SmtpSink:
    """tests/email's aiosmtpd sink on a fixed loopback port, to stop (F16a) and start again."""

    def __init__(self, sink: Sink | None = None) -> None:
        self.sink = sink or Sink()
        self.port = free_port()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        """Stop listening; sessions still open are cut (their transports collected here, quietly,
        rather than warning in whichever test the garbage collector next runs in)."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                gc.collect()

    def message_ids(self) -> Counter[str]:
        with self.sink.lock:
            return Counter(str(m["Message-ID"]) for m in self.sink.messages)


def children(pid: int) -> list[int]:
    """The child PIDs of ``pid`` (a Dramatiq main process's worker processes)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def memory_kb(pid: int, field_name: str = "VmRSS") -> int:
    """A ``/proc/<pid>/status`` memory field in kB (VmRSS now, VmHWM its peak); 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return 0


class PeakRss:
    """Samples the resident memory of some processes every 50 ms; ``peak`` is the largest sum seen.

    VmHWM would do for one process, but not across a restart; sampling also shows growth that a
    process gives back (a body read and freed).
    """

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids
        self.peak = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                total = sum(memory_kb(pid) for pid in self.pids())
            except (FileNotFoundError, ProcessLookupError):
                total = 0
            self.peak = max(self.peak, total)
            self.stopping.wait(0.05)

    def __enter__(self) -> PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=2)


@dataclass
class HostileSource:
    """A report data source on 127.0.0.1 whose paths misbehave (F18), generating bodies as they are
    read, so that gigabytes cost the test nothing:

    ``/silent`` accepts and never answers; ``/drip`` sends one byte a second; ``/huge`` sends
    ``huge`` bytes of NDJSON rows; ``/bomb`` sends gzip that inflates to ``huge`` bytes;
    ``/bad.json`` and ``/bad.csv`` send malformed data; ``/good`` sends ``good_rows`` valid rows.
    """

    huge: int = 5 * 1024**3
    good_rows: int = 200
    port: int = 0
    requests: Counter[str] = field(default_factory=Counter)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @contextmanager
    def running(self) -> Iterator[HostileSource]:
        state = self
        line = b'{"name": "' + b"x" * 80 + b'", "qty": 1}\n'
        block = line * (1024 * 1024 // len(line))

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                state.requests[path] += 1
                try:
                    self._answer(path)
                except OSError:
                    self.close_connection = True  # the worker gave up: what these tests want

            def _answer(self, path: str) -> None:
                if path == "/silent":
                    time.sleep(120)
                    return
                self.send_response(200)
                if path == "/drip":
                    body = line * 100
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    for offset in range(len(body)):
                        self.wfile.write(body[offset : offset + 1])
                        self.wfile.flush()
                        time.sleep(1)
                elif path in ("/huge", "/bomb"):
                    bomb = path == "/bomb"
                    if bomb:
                        self.send_header("Content-Encoding", "gzip")
                        self.send_header("Transfer-Encoding", "chunked")
                    else:
                        self.send_header("Content-Length", str(state.huge))
                    self.end_headers()
                    _stream(self.wfile, state.huge, block, gzipped=bomb)
                else:
                    body = {
                        "/bad.json": b'{"name": "a", "qty": 1}\n{"name": "b", "qty": \n',
                        "/bad.csv": b'name,qty\n"a,1\nb,2,3,4\n',
                        "/good": line * state.good_rows,
                    }.get(path, b"")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        with serve_http(Handler) as self.port:
            yield self


def _stream(out: Any, size: int, block: bytes, *, gzipped: bool) -> None:
    """Write ``size`` bytes of ``block`` repeated (gzipped, in HTTP chunks, if asked) as they are taken."""
    gz = zlib.compressobj(9, zlib.DEFLATED, 31)
    sent = 0
    while sent < size:
        piece = block[: size - sent]
        sent += len(piece)
        if not gzipped:
            out.write(piece)
            continue
        data = gz.compress(piece) + (gz.flush() if sent >= size else b"")
        if data:
            out.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    if gzipped:
        out.write(b"0\r\n\r\n")
