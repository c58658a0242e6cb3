"""An open-loop HTTP/1.1 load generator for the overload scenario (F14): loopback only, bounded.

Requests arrive on a schedule (a fixed rate per stream), whether or not the server keeps up, the way
independent clients arrive; a closed loop of N clients would slow its own arrivals down as the
server slows and hide the overload. Each answer records two times:

- ``seconds``: from the request's *scheduled* moment to its answer, so time spent waiting for a
  free connection counts (no coordinated omission);
- ``service``: from the moment its bytes were written to its answer: what the server took.

An answer's moment is when its last bytes reached the socket, by the kernel's receive timestamp,
not when the generator read them, so a generator that fell behind on cores it shares with the
server does not make the server look slow.

Every stream has its own connections (keep-alive, opened on first use, up to ``connections``), so a
flooding stream never delays another stream's requests inside the generator. It speaks just enough
HTTP/1.1 (Content-Length bodies) for the API, on non-blocking sockets of asyncio's loop, to spend
little CPU per request on cores it shares with the server.

The generator runs with Python's cyclic garbage collector off (as ``timeit`` does), since it shares
its process with the test's ledger: a full collection walking those hundreds of thousands of
objects stopped its event loop for up to 270 ms, and every answer arriving then was timed that much
late. It records its own stalls (:attr:`Run.stalls`) so that a late answer can be told apart from a
late client.

Bounded: only ``127.0.0.1``; at most :data:`MAX_SECONDS` per run and :data:`MAX_REQUESTS` in all.
``python -m tests.chaos.loadgen --port P --key K --rate R --seconds S`` runs one stream from a shell.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: The longest run the generator agrees to, in seconds.
MAX_SECONDS = 300.0
#: The most requests one run may make, over all its streams.
MAX_REQUESTS = 500_000
HOST = "127.0.0.1"
#: Seconds idle after which a reused connection may have been closed by the server's keep-alive
#: timeout (gunicorn's is 5 s) just as a request went out.
KEEPALIVE_RACE = 4.0
#: Linux's socket option for nanosecond receive timestamps (``SO_TIMESTAMPNS``; not in :mod:`socket`).
SO_TIMESTAMPNS = 35
#: Room for one ``struct timespec`` of ancillary data, and the most bytes read at once.
TIMESTAMP_SPACE = socket.CMSG_SPACE(16)
READ_SIZE = 65536
#: A lateness of the generator's own loop worth recording, in seconds.
STALL = 0.05


@dataclass(frozen=True)
class Stream:
    """One kind of traffic: a request sent ``rate`` times a second over up to ``connections`` connections."""

    label: str
    rate: float
    request: bytes
    connections: int = 64

    @classmethod
    def post(
        cls,
        label: str,
        rate: float,
        path: str,
        body: Any,
        *,
        key: str,
        connections: int = 64,
        raw: bytes | None = None,
    ) -> Stream:
        """A JSON POST with a bearer key (``raw`` sends those bytes as the body instead of ``body``)."""
        data = raw if raw is not None else json.dumps(body, separators=(",", ":")).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        return cls(label, rate, head.encode() + data, connections)


@dataclass(frozen=True)
class Answer:
    """One request's outcome (``status`` None: no answer within the timeout, or the connection broke)."""

    label: str
    at: float  # scheduled moment, seconds since the run started
    seconds: float  # scheduled moment → answer
    service: float  # bytes written → answer
    status: int | None
    error: str | None  # the JSON body's "error" code, or the client-side exception's name
    retry_after: str | None
    job_id: str | None


@dataclass
class Run:
    """A run's answers, with what was asked of it."""

    answers: list[Answer] = field(default_factory=list)
    seconds: float = 0.0
    #: The longest the generator's own event loop was late (a stalled client inflates every time).
    loop_lag: float = 0.0
    #: When (seconds since the start) the generator's loop was late by more than :data:`STALL`, and by how much.
    stalls: list[tuple[float, float]] = field(default_factory=list)

    def of(self, label: str) -> list[Answer]:
        """The answers of one stream."""
        return [a for a in self.answers if a.label == label]


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers


def _decode(status: int, body: bytes) -> tuple[str | None, str | None]:
    """The job id of a 202/200, or the error code of anything else."""
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        return None, "not_json"
    if not isinstance(document, dict):
        return None, None
    if status in (200, 202):
        return document.get("id"), None
    return None, document.get("error")


class _Connection:
    """One keep-alive connection: one request at a time, its answer parsed as the bytes arrive.

    It reads with ``recvmsg`` and the kernel's receive timestamps (``SO_TIMESTAMPNS``), so an
    answer counts as done when its last bytes reached the socket, not when the generator's loop got
    round to reading them: on cores shared with the server, the loop can be a few hundred
    milliseconds late, and that is the client's delay, not the server's.
    """

    def __init__(self, pool: _Pool, sock: socket.socket) -> None:
        self.pool = pool
        self.sock = sock
        self.fd = sock.fileno()
        self.buffer = bytearray()
        self.outgoing = memoryview(b"")
        self.writing = False
        self.arrived = 0.0  # the kernel's receive time (the wall clock) of the latest bytes read
        self.scheduled = 0.0
        self.sent = 0.0
        self.idle_since = 0.0
        self.reused_after = 0.0
        self.busy = False
        self.closed = False
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pool.loop.add_reader(self.fd, self._readable)

    def send(self, scheduled: float) -> None:
        self.scheduled, self.sent, self.busy = scheduled, self.pool.loop.time(), True
        self.reused_after = self.sent - self.idle_since if self.idle_since else 0.0
        self.buffer.clear()
        self.outgoing = memoryview(self.pool.stream.request)
        self._write()

    def _write(self) -> None:
        try:
            written = self.sock.send(self.outgoing)
        except BlockingIOError:
            written = 0
        except OSError:
            self.fail("ConnectionReset")
            return
        self.outgoing = self.outgoing[written:]
        if self.outgoing and not self.writing:
            self.writing = True
            self.pool.loop.add_writer(self.fd, self._write)
        elif not self.outgoing and self.writing:
            self.writing = False
            self.pool.loop.remove_writer(self.fd)

    def _readable(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(READ_SIZE, TIMESTAMP_SPACE)
        except BlockingIOError:
            return
        except OSError:
            self.fail("ConnectionReset")
            return
        if not data:
            self.fail("ConnectionClosed")
            return
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                self.arrived = seconds + nanoseconds / 1e9
        self._received(data)

    def done_at(self) -> float:
        """The loop-clock moment the latest bytes arrived (now, if the kernel gave no timestamp)."""
        now = self.pool.loop.time()
        if not self.arrived:
            return now
        return now - max(0.0, time.time() - self.arrived)

    def _received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or not self.busy:
            return
        status, headers = _parse_head(bytes(self.buffer[:end]))
        length = int(headers.get("content-length", "0"))
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        self.busy = False
        self.idle_since = self.pool.loop.time()
        job_id, error = _decode(status, body)
        self.pool.answered(self, status, error, headers.get("retry-after"), job_id)
        if headers.get("connection", "").lower() == "close":
            self.close()
        else:
            self.pool.free(self)

    def fail(self, reason: str) -> None:
        """End the request in progress without an answer and drop the connection.

        A connection closed under a request sent after the connection sat idle for longer than
        :data:`KEEPALIVE_RACE` is the keep-alive race every HTTP client meets (the server closed the
        idle connection as the request went out): recorded as ``KeepAliveRace``, not as a failure
        of the server under load.
        """
        if self.busy and reason != "TimeoutError" and self.reused_after > KEEPALIVE_RACE:
            reason = "KeepAliveRace"
        if self.busy:
            self.busy = False
            self.pool.answered(self, None, reason, None, None)
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool.loop.remove_reader(self.fd)
            if self.writing:
                self.pool.loop.remove_writer(self.fd)
            self.sock.close()
            self.pool.lost(self)


class _Pool:
    """One stream's connections and the requests waiting for one."""

    def __init__(self, stream: Stream, port: int, timeout: float, start: float, out: list[Answer]) -> None:
        self.stream, self.port, self.timeout, self.start, self.out = stream, port, timeout, start, out
        self.loop = asyncio.get_running_loop()
        self.idle: list[_Connection] = []
        self.open: set[_Connection] = set()
        self.opening = 0
        self.waiting: deque[float] = deque()
        self.outstanding = 0

    def dispatch(self, scheduled: float) -> None:
        """Send a request scheduled for ``scheduled`` now, or as soon as a connection is free."""
        self.outstanding += 1
        if self.idle:
            self.idle.pop().send(scheduled)
            return
        self.waiting.append(scheduled)
        if len(self.open) + self.opening < self.stream.connections:
            self.opening += 1
            self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(self.timeout):
                await self.loop.sock_connect(sock, (HOST, self.port))
        except (OSError, TimeoutError) as exc:
            sock.close()
            self.opening -= 1
            if self.waiting:  # the oldest waiting request fails with the connection it waited for
                self._record(self.waiting.popleft(), self.loop.time(), None, type(exc).__name__, None, None)
            return
        self.opening -= 1
        connection = _Connection(self, sock)
        self.open.add(connection)
        self.free(connection)

    def free(self, connection: _Connection) -> None:
        if self.waiting:
            connection.send(self.waiting.popleft())
        else:
            self.idle.append(connection)

    def lost(self, connection: _Connection) -> None:
        self.open.discard(connection)
        if connection in self.idle:
            self.idle.remove(connection)
        if self.waiting and len(self.open) + self.opening < self.stream.connections:
            self.opening += 1
            self.loop.create_task(self._connect())

    def answered(
        self,
        connection: _Connection,
        status: int | None,
        error: str | None,
        retry_after: str | None,
        job_id: str | None,
    ) -> None:
        # A failure has no answer bytes: it ends now, not at the previous answer's arrival.
        done = connection.done_at() if status is not None else None
        self._record(connection.scheduled, connection.sent, status, error, retry_after, job_id, done)

    def _record(
        self,
        scheduled: float,
        sent: float,
        status: int | None,
        error: str | None,
        retry_after: str | None,
        job_id: str | None,
        done: float | None = None,
    ) -> None:
        """Append one answer; ``done`` is the loop-clock moment it ended (None: now)."""
        done = self.loop.time() if done is None else done
        self.outstanding -= 1
        self.out.append(
            Answer(
                self.stream.label,
                scheduled - self.start,
                done - scheduled,
                done - sent,
                status,
                error,
                retry_after,
                job_id,
            )
        )

    def expire(self) -> None:
        """Give up on requests in progress (or waiting) for longer than the timeout."""
        now = self.loop.time()
        for connection in list(self.open):
            if connection.busy and now - connection.sent > self.timeout:
                connection.fail("TimeoutError")
        while self.waiting and now - self.waiting[0] > self.timeout:
            self._record(self.waiting.popleft(), now, None, "TimeoutError", None, None)

    def close(self) -> None:
        for connection in list(self.open):
            connection.close()


async def _stream(stream: Stream, port: int, seconds: float, timeout: float, start: float, out: list[Answer]) -> None:
    pool = _Pool(stream, port, timeout, start, out)
    loop = pool.loop
    total = int(stream.rate * seconds)
    interval = 1.0 / stream.rate if stream.rate > 0 else 0.0
    index = 0
    while index < total:
        now = loop.time()
        while index < total and start + index * interval <= now:
            pool.dispatch(start + index * interval)
            index += 1
        pool.expire()
        if index < total:
            await asyncio.sleep(max(0.0, min(0.005, start + index * interval - loop.time())))
    while pool.outstanding > 0:
        pool.expire()
        await asyncio.sleep(0.01)
    pool.close()


async def _run(port: int, streams: Sequence[Stream], seconds: float, timeout: float) -> Run:
    loop = asyncio.get_running_loop()
    run = Run()
    start = loop.time() + 0.05
    running = True

    async def watch() -> None:
        while running:
            before = loop.time()
            await asyncio.sleep(0.01)
            late = loop.time() - before - 0.01
            run.loop_lag = max(run.loop_lag, late)
            if late > STALL:
                run.stalls.append((round(before - start, 3), round(late, 3)))

    watcher = loop.create_task(watch())
    await asyncio.gather(*(_stream(s, port, seconds, timeout, start, run.answers) for s in streams))
    running = False
    await watcher
    run.seconds = loop.time() - start
    return run


def run(port: int, streams: Sequence[Stream], seconds: float, *, timeout: float = 5.0) -> Run:
    """Offer every stream at its rate for ``seconds`` against ``127.0.0.1:port``; every answer, once all are in.

    Raises:
        ValueError: the run is longer than :data:`MAX_SECONDS` or more than :data:`MAX_REQUESTS`.
    """
    requests = sum(int(s.rate * seconds) for s in streams)
    if not 0 < seconds <= MAX_SECONDS or requests > MAX_REQUESTS:
        raise ValueError(f"{requests} requests over {seconds} s is over the generator's bounds")
    collecting = gc.isenabled()
    gc.disable()
    try:
        return asyncio.run(_run(port, streams, seconds, timeout))
    finally:
        if collecting:
            gc.enable()


@dataclass(frozen=True)
class Step:
    """One step of a capacity search: what was offered and what was accepted."""

    offered: float
    accepted_per_s: float
    p99_ms: float


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


def capacity(
    port: int,
    make: Any,
    *,
    start: float = 100.0,
    step_seconds: float = 2.0,
    most: float = 6400.0,
    out: list[Answer] | None = None,
) -> tuple[float, list[Step]]:
    """The accepted rate the server sustains: offer ``start``, then double, until it stops keeping up.

    ``make(rate)`` builds the stream to offer. A step keeps up when at least 90% of its requests got
    202 with p99 under 500 ms; the capacity is the best accepted rate of any step (the plateau
    once shedding begins). Returns it with the steps; every answer (warm-up included) is appended
    to ``out``.
    """
    answers = out if out is not None else []
    answers += run(port, [make(start / 2)], 1.0).answers  # warm up: connections, the publisher, queues
    steps: list[Step] = []
    rate = start
    while rate <= most:
        result = run(port, [make(rate)], step_seconds)
        answers += result.answers
        accepted = sum(1 for a in result.answers if a.status == 202)
        p99 = percentile([a.seconds for a in result.answers], 99) * 1000
        steps.append(Step(rate, accepted / max(step_seconds, result.seconds), p99))
        if accepted < 0.9 * rate * step_seconds or p99 > 500:
            break
        rate *= 2
    return max(s.accepted_per_s for s in steps), steps


def main() -> None:
    """One stream from the command line; prints a summary."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.loadgen", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--body", default='{"type":"system.noop","payload":{}}')
    args = parser.parse_args()
    stream = Stream.post(
        "cli", args.rate, "/v1/jobs", None, key=args.key, connections=args.connections, raw=args.body.encode()
    )
    started = time.monotonic()
    result = run(args.port, [stream], args.seconds)
    statuses: dict[str, int] = {}
    for answer in result.answers:
        statuses[str(answer.status)] = statuses.get(str(answer.status), 0) + 1
    sys.stdout.write(
        json.dumps(
            {
                "requests": len(result.answers),
                "wall_s": round(time.monotonic() - started, 2),
                "statuses": statuses,
                "p50_ms": round(percentile([a.seconds for a in result.answers], 50) * 1000, 1),
                "p99_ms": round(percentile([a.seconds for a in result.answers], 99) * 1000, 1),
                "max_ms": round(max((a.seconds for a in result.answers), default=0) * 1000, 1),
            }
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
