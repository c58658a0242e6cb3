"""What the benchmark's stand-in servers (SMTP sink, webhook receiver) share: their command line and lifetime."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType


def server_args(prog: str) -> argparse.Namespace:
    """``--port P --out FILE``."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args()


def serve_until_signalled(
    port: int, out: Path, *, start: Callable[[], None], stop: Callable[[], None], counts: Callable[[], dict[str, int]]
) -> None:
    """Start the server, run until SIGTERM or SIGINT, stop it and write its counts to ``out`` as JSON."""
    stopping = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    while not stopping.wait(0.5):
        pass
    stop()
    out.write_text(json.dumps(counts()))
