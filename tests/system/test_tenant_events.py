"""``GET /v1/events`` on a real API process (gunicorn, gevent): a client that stops reading is cut, others flow.

The client holds a tiny receive window and stops reading; a flood of changes fills the server's
small send buffer (``offload_api.views.feed.SEND_BUFFER``) and its stream waits, alone: another
stream on the same process keeps receiving. When the slow client reads again, what its stream
sends next is older than ``OFFLOAD_EVENTS_MAX_LAG``, so it ends with an ``overflow`` event.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from pathlib import Path

from offload.status import StatusStore
from tests.support import KEYS, REDIS_URL
from tests.system.stack import Api

#: Ten long tags make each change about a kilobyte on the wire.
LONG_TAGS = [f"flood-{i}-" + "x" * 50 for i in range(10)]
#: Changes in the flood: about 800 kB, several times what the server's send buffer and the client's
#: receive window hold together.
FLOOD = 800


def _open_stream(port: int, path: str, *, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connect: the window
    sock.connect(("127.0.0.1", port))
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEYS['acme']}\r\n\r\n"
    sock.sendall(request.encode())
    head = b""
    while b"retry:" not in head:
        head += sock.recv(1024)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return sock


def _read_until(sock: socket.socket, mark: bytes, timeout: float) -> str:
    """What the socket sends until ``mark`` (or ``timeout`` seconds pass)."""
    sock.settimeout(timeout)
    chunks = b""
    try:
        while mark not in chunks and (chunk := sock.recv(65536)):
            chunks += chunk
    except TimeoutError:
        pass
    return chunks.decode(errors="replace")


def _events(body: str) -> list[str]:
    """The event names of a chunked SSE body, in order."""
    return [line.removeprefix("event: ") for line in body.splitlines() if line.startswith("event: ")]


def test_a_client_that_stops_reading_is_cut_with_overflow_and_never_stalls_another(env, logs: Path) -> None:
    api = Api({**env, "OFFLOAD_EVENTS_MAX_LAG": "1", "OFFLOAD_SSE_KEEPALIVE": "0.5"}, logs)
    store = StatusStore.from_url(REDIS_URL)
    try:
        slow = _open_stream(api.port, "/v1/events", receive_buffer=4096)
        other = _open_stream(api.port, "/v1/events?tag=calm")
        calm = str(uuid.uuid4())
        received: list[str] = []
        reader = threading.Thread(
            target=lambda: received.append(_read_until(other, calm.encode(), timeout=15)), daemon=True
        )
        reader.start()
        fields: dict[str, str | int] = {"tenant": "acme", "type": "system.noop", "queue": "system", "payload": "{}"}
        for _ in range(FLOOD):
            created = {**fields, "created_at": int(time.time() * 1000), "tags": json.dumps(LONG_TAGS)}
            store.lifecycle.create(str(uuid.uuid4()), created)
        flooded = time.monotonic()
        store.lifecycle.create(calm, {**fields, "created_at": int(time.time() * 1000), "tags": '["calm"]'})
        reader.join(15)
        # The other stream, on the same process, got its change at once while the slow one waited.
        assert received and calm in received[0] and time.monotonic() - flooded < 10
        time.sleep(1.5)  # the slow stream's next change is now older than the lag allowed
        body = _read_until(slow, b"event: overflow", timeout=15)

        names = _events(body)
        assert names[-1] == "overflow" and 0 < names.count("state") < FLOOD, (len(names), names[-3:])
        assert "The client read too slowly" in body.rsplit("event: overflow", 1)[1]
        slow.close()
        other.close()
    finally:
        store.close()
        api.stop()
