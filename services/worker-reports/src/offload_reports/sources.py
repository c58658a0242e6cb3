"""Where a report's rows come from: the payload itself, or a URL streamed through the SSRF guard.

A URL source is read in chunks and parsed as it arrives (NDJSON line by line, CSV with the csv
module, a JSON array object by object with the C decoder), so memory does not grow with the
number of rows. Every limit fails the job with a clear code: the byte cap (counted after
decompression, so a gzip bomb stops at the cap), the row cap, a least transfer rate (a source
that drips a byte a second never lets a read time out), a total deadline besides the per-read
timeout, and malformed data (``bad_source_data``).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
from urllib3.exceptions import HTTPError as TransportError

from offload.contracts.reports import UrlRows
from offload.errors import PermanentJobError, TransientJobError
from offload.numbers import whole_number
from offload.outbound import fetch_source
from offload.urls import UrlPolicy

CHUNK = 64 * 1024
#: Seconds of waiting on the source over which its transfer rate is judged.
RATE_WINDOW = 10.0
_WHITESPACE = " \t\r\n"


@dataclass
class Rows:
    """An iterator of row objects, and how far through the source it is (for progress)."""

    rows: Iterator[dict[str, Any]]
    #: Rows the source will give, when known (inline rows).
    expected: int | None = None
    #: Bytes the source will send, when the server said (``Content-Length``).
    total_bytes: int | None = None
    read_bytes: int = field(default=0)

    def percent(self, done: int) -> float | None:
        """How far along the source is, or None when nothing says how long it is."""
        if self.expected:
            return 100 * done / self.expected
        if self.total_bytes:
            return min(99.0, 100 * self.read_bytes / self.total_bytes)
        return None


def inline(rows: list[dict[str, Any]]) -> Rows:
    """Rows given in the payload."""
    return Rows(iter(rows), expected=len(rows))


@dataclass(frozen=True)
class UrlFetcher:
    """Opens URL sources with the SSRF guard and the report limits."""

    policy: UrlPolicy
    max_bytes: int
    deadline: float
    read_timeout: float = 10.0
    #: Least bytes a second the source must send, averaged over each ``RATE_WINDOW`` seconds spent
    #: waiting for it (time spent writing rows does not count against it); 0: no floor.
    min_rate: float = 0.0
    rate_window: float = RATE_WINDOW

    def open(self, source: UrlRows) -> tuple[requests.Response, Rows]:
        """Start fetching ``source``; the caller closes the response.

        Raises:
            PermanentJobError: the URL is not allowed, or the server refused it.
            TransientJobError: the server could not be reached or failed (5xx).
        """
        response = fetch_source(source.url, policy=self.policy, read_timeout=self.read_timeout)
        length = response.headers.get("Content-Length")
        encoded = response.headers.get("Content-Encoding", "identity") != "identity"
        rows = Rows(iter(()), total_bytes=whole_number(length) if not encoded else None)
        text = self._text(response, rows)
        parse = {"ndjson": _ndjson, "csv": _csv, "json": _json_array}[source.format]
        rows.rows = parse(text)
        return response, rows

    def _text(self, response: requests.Response, rows: Rows) -> Iterator[str]:
        """The body as text chunks, within the byte cap and the deadline.

        The deadline is kept by a timer that closes the response: a source that drips a byte at a
        time never lets a read time out, and a blocked read only ends when its socket does.
        """
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="strict")
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            # Closing a socket does not wake a thread blocked reading it; shutting it down does.
            sock = getattr(getattr(response.raw, "connection", None), "sock", None)
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            response.close()

        timer = threading.Timer(self.deadline, expire)
        timer.daemon = True
        timer.start()
        try:
            for chunk in self._arrivals(response):
                rows.read_bytes += len(chunk)
                if rows.read_bytes > self.max_bytes:
                    raise PermanentJobError(
                        f"The source sent more than {self.max_bytes:,} bytes.", code="source_too_large"
                    )
                yield decoder.decode(chunk)
            if expired.is_set():
                raise TransientJobError(f"The source took longer than {self.deadline:g} s.", code="source_timeout")
            yield decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise PermanentJobError("The source is not UTF-8 text.", code="bad_source_data") from None
        except (requests.RequestException, TransportError, OSError, ValueError, AttributeError) as exc:
            if expired.is_set():  # the timer closed the response under the read
                raise TransientJobError(
                    f"The source took longer than {self.deadline:g} s.", code="source_timeout"
                ) from None
            # The raw read raises urllib3's own errors (a body cut short: ProtocolError), not requests'.
            if isinstance(exc, requests.RequestException | TransportError | OSError):
                raise TransientJobError(
                    f"The source stopped sending: {type(exc).__name__}.", code="source_unreachable"
                ) from None
            raise
        finally:
            timer.cancel()

    def _arrivals(self, response: requests.Response) -> Iterator[bytes]:
        """The decoded body as it arrives (not in full chunks), held to ``min_rate`` per ``rate_window``.

        Raises:
            TransientJobError: ``source_too_slow``, the source sent less than ``min_rate`` bytes a
                second over a window of waiting for it.
        """
        waited = 0.0
        received = 0
        while True:
            started = time.monotonic()
            data = response.raw.read1(CHUNK, decode_content=True)
            if not data:
                return
            waited += time.monotonic() - started
            received += len(data)
            if waited >= self.rate_window:
                if received < self.min_rate * waited:
                    raise TransientJobError(
                        f"The source sent {received / waited:,.0f} bytes a second; at least "
                        f"{self.min_rate:,.0f} are needed.",
                        code="source_too_slow",
                    )
                waited, received = 0.0, 0
            yield data


def _bad(line: int, problem: str) -> PermanentJobError:
    return PermanentJobError(f"Row {line} of the source: {problem}.", code="bad_source_data")


def _lines(text: Iterator[str]) -> Iterator[str]:
    pending = ""
    for chunk in text:
        pending += chunk
        *complete, pending = pending.split("\n")
        yield from complete
    if pending:
        yield pending


def _ndjson(text: Iterator[str]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise _bad(number, "not valid JSON") from None
        if not isinstance(row, dict):
            raise _bad(number, "not a JSON object")
        yield row


def _csv(text: Iterator[str]) -> Iterator[dict[str, Any]]:
    # strict: an unclosed quote is an error, not one cell swallowing the rest of the file (F18e).
    reader = csv.reader((line + "\n" for line in _lines(text)), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        raise _bad(1, f"not valid CSV ({exc})") from None
    try:
        for row in reader:
            if not row:
                continue
            if len(row) > len(header):
                raise _bad(reader.line_num, f"{len(row)} fields but the header has {len(header)}")
            yield dict(zip(header, row, strict=False))
    except csv.Error as exc:
        raise _bad(reader.line_num, f"not valid CSV ({exc})") from None


def _json_array(text: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Objects of one top-level JSON array, decoded one at a time as the text arrives."""
    reader = _ArrayReader(iter(text))
    reader.expect("[", "not a JSON array")
    if reader.peek() == "]":
        return
    while True:
        yield reader.object()
        if reader.peek() == "]":
            return
        reader.expect(",", "a comma is missing between rows")


class _ArrayReader:
    """A cursor over JSON text that arrives in chunks; keeps only the undecoded tail."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self.chunks = chunks
        self.buffer = ""
        self.position = 0
        self.count = 0
        self.decoder = json.JSONDecoder()

    def _more(self) -> bool:
        chunk = next(self.chunks, None)
        if chunk is None:
            return False
        self.buffer, self.position = self.buffer[self.position :] + chunk, 0
        return True

    def peek(self) -> str:
        """The next character that is not white space."""
        while True:
            while self.position < len(self.buffer) and self.buffer[self.position] in _WHITESPACE:
                self.position += 1
            if self.position < len(self.buffer):
                return self.buffer[self.position]
            if not self._more():
                raise _bad(self.count + 1, "the JSON array is not closed" if self.count else "not a JSON array")

    def expect(self, char: str, problem: str) -> None:
        """Step over ``char``, or fail with ``problem``."""
        if self.peek() != char:
            raise _bad(self.count + 1, problem)
        self.position += 1

    def object(self) -> dict[str, Any]:
        """The next array element, which must be an object."""
        self.peek()
        while True:
            try:
                row, end = self.decoder.raw_decode(self.buffer, self.position)
                break
            except ValueError:
                if not self._more():
                    raise _bad(self.count + 1, "not valid JSON") from None
        if not isinstance(row, dict):
            raise _bad(self.count + 1, "not a JSON object")
        self.count += 1
        self.position = end
        return row
