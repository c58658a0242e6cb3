"""Small helpers shared by the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NoReturn

import pytest

from offload.testing import wait_for as wait_for  # the one poller, shared with the plugin

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    """True if something listens on ``127.0.0.1:port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def spawn(args: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a command in its own process group (so the whole tree can be signalled), logging to ``log``."""
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            args, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )


def stop(process: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Signal a process group started by :func:`spawn` and wait for it (SIGKILL after ``timeout``)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass


def kill_tree(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process group started by :func:`spawn`: the worker and all its children, no cleanup."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    process.wait(timeout=5)


def children(pid: int) -> list[int]:
    """The child PIDs of ``pid`` (the worker processes of a Dramatiq main process), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


@contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """Serve ``handler`` on a free loopback port from a background thread; yields the port.

    One thread per connection (daemon threads: a client that hangs never holds up the test's end);
    the server is shut down and its socket closed on exit.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def missing(what: str, *, under_ci: str, locally: str) -> NoReturn:
    """A tool a test needs is not installed: skip the test, or fail it under ``CI``, where ``make test``
    must have installed it (``under_ci`` says what installs it, ``locally`` how to get it)."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing; {under_ci}")
    pytest.skip(f"{what} is missing ({locally})")
