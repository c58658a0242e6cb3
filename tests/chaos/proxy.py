"""A TCP fault proxy between clients and a backend, on loopback (reliability-security.md §6.0).

The Toxiproxy pattern without its binary: clients connect to the proxy's port, which forwards to
the backend, unless a fault is set:

- ``pass``: forward both ways;
- ``blackhole``: accept and read, never forward (a partition: the peer sees silence, not a close);
- ``reset``: close every connection, open ones included, at once (RST);
- ``latency``: forward, each chunk held ``latency_ms`` first.

It runs an asyncio loop in a thread of the test process, so a test changes the mode between steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Literal

Mode = Literal["pass", "blackhole", "reset", "latency"]


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``127.0.0.1:<backend_port>`` with a settable fault."""

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.mode: Mode = "pass"
        self.latency_ms = 0
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.writers: set[asyncio.StreamWriter] = set()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port: int = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    def set(self, mode: Mode, *, latency_ms: int = 0) -> None:
        """Change the fault; ``reset`` also cuts every open connection."""
        self.mode, self.latency_ms = mode, latency_ms
        if mode == "reset":
            self.loop.call_soon_threadsafe(self._reset_all)

    def _reset_all(self) -> None:
        for writer in list(self.writers):
            sock = writer.get_extra_info("socket")
            if sock is not None:  # SO_LINGER 0: close with RST, not FIN
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
        self.writers.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "reset":
            self.writers.add(writer)
            self._reset_all()
            return
        self.writers.add(writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        except OSError:
            writer.close()
            return
        self.writers.add(upstream_writer)
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.mode == "blackhole":
                    continue  # read and drop: the other side hears nothing
                if self.mode == "latency" and self.latency_ms:
                    await asyncio.sleep(self.latency_ms / 1000)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    def close(self) -> None:
        """Stop listening, cut everything, and end the loop's thread."""

        async def shutdown() -> None:
            self._reset_all()
            self.server.close()
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
