"""An SMTP sink in a process of its own, for scenarios that measure email throughput (F15, F20).

A sink inside the test process shares that process's interpreter lock with everything else the
test runs there: hostile webhook receivers, the submitter, the ledger's polling. Throughput
measured through it then depends on how busy the *test* is, not on Offload (F15's "during" phase
ran seven receivers beside it, its baseline none). A real SMTP server is a process of its own;
so is this one. It accepts every message and appends its ``Message-ID`` to a file, one a line,
which the test reads back to find duplicates.

``python -m tests.chaos.smtp_server --port P --out FILE`` runs it until SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections import Counter
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import IO, Any

from tests.helpers import free_port, port_open, spawn, stop, wait_for


class _Recorder:
    """aiosmtpd handler: accept every recipient and message, and write down each Message-ID."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.parser = BytesHeaderParser()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        headers = self.parser.parsebytes(envelope.content)
        self.out.write(f"{headers.get('Message-ID', '')}\n")
        self.out.flush()
        return "250 Message accepted for delivery"


class SmtpServerProcess:
    """The sink above, started and stopped by PID, with :meth:`message_ids` read from its file."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.out = folder / f"smtp-{self.port}.ids"
        self.log = folder / f"smtp-{self.port}.log"
        self.process: Any = None

    def start(self) -> None:
        self.out.touch()
        self.process = spawn(
            [sys.executable, "-m", "tests.chaos.smtp_server", "--port", str(self.port), "--out", str(self.out)],
            env={},
            log=self.log,
        )
        wait_for(lambda: port_open(self.port), timeout=20, message=lambda: self.log.read_text()[-2000:])

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None

    def message_ids(self) -> Counter[str]:
        """How many times each Message-ID arrived."""
        return Counter(line for line in self.out.read_text().splitlines() if line)


def main() -> None:
    from aiosmtpd.controller import Controller

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with args.out.open("a") as out:
        controller = Controller(_Recorder(out), hostname="127.0.0.1", port=args.port)
        controller.start()
        try:
            done.wait()
        finally:
            controller.stop()


if __name__ == "__main__":
    main()
