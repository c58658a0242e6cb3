"""Running the shop for tests and benchmarks: its web app as users run it, in a process of its own.

:func:`shop_server` starts gunicorn with the shop's own configuration (threaded workers) on a
loopback port, with the ``OFFLOAD_*`` variables of some :class:`ShopSettings`, and stops it after.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import requests

from offload_orders.settings import ShopSettings


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def environment(settings: ShopSettings) -> dict[str, str]:
    """The ``OFFLOAD_*`` variables that configure the app as ``settings`` say."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OFFLOAD_")}
    for name, value in settings.model_dump().items():
        if name.startswith("orders_") or name in ("env", "broker_url", "redis_url", "redis_prefix"):
            secret = getattr(value, "get_secret_value", None)
            env[f"OFFLOAD_{name.upper()}"] = str(secret() if secret else value)
    env["OFFLOAD_LOG_FORMAT"] = "text"
    return env


@contextlib.contextmanager
def shop_server(settings: ShopSettings, port: int, *, workers: int = 2, threads: int = 16) -> Iterator[str]:
    """Run ``gunicorn -c python:offload_orders.gunicorn_conf offload_orders.wsgi:app``; yields its base URL."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:offload_orders.gunicorn_conf",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "offload_orders.wsgi:app",
    ]
    process = subprocess.Popen(command, env=environment(settings))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"The shop's gunicorn exited with {process.returncode}.")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{base}/healthz", timeout=1).ok:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("The shop's gunicorn did not answer within 60 s.")
            time.sleep(0.1)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
