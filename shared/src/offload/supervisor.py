"""``offload supervise``: run a Procfile's processes like an orchestrator would, for ``make up``.

honcho and foreman stop everything when one process exits; an orchestrator (compose's
``restart: unless-stopped``, Kubernetes) starts it again. This does the latter, on one machine:

- every process of the Procfile runs in a process group of its own, through ``/bin/sh -c``;
- its output lines are prefixed with the time and its name, like honcho's;
- a process that exits while the suite runs is started again after a backoff (1 s, doubling to
  30 s; back to 1 s once it has stayed up a minute), and the restart is logged;
- SIGINT (Ctrl-C) or SIGTERM (``make down``) stops every process gracefully: SIGTERM to each group,
  then SIGKILL to what is left after ``--grace`` seconds (the workers' own shutdown timeout is 60 s).

Procfile.dev stays the one list of processes (compose, the images and Kubernetes run its commands).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

#: Seconds before the first restart; doubled after each quick exit, up to :data:`MAX_BACKOFF`.
MIN_BACKOFF = 1.0
MAX_BACKOFF = 30.0
#: A process that stayed up this long is healthy again: its next restart waits :data:`MIN_BACKOFF`.
HEALTHY_AFTER = 60.0


def read_procfile(path: Path) -> dict[str, str]:
    """The ``name: command`` lines of a Procfile, in order (comments and blank lines skipped).

    Raises:
        ValueError: a line is not ``name: command``, or a name repeats.
    """
    processes: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or not command.strip() or name.strip() in processes:
            raise ValueError(f"{path}:{number}: expected a new 'name: command' line")
        processes[name.strip()] = command.strip()
    return processes


@dataclass
class Service:
    """One process of the Procfile, its current run and its restart backoff."""

    name: str
    command: str
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = MIN_BACKOFF
    restarts: int = 0
    next_start: float = 0.0
    pump: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    """Starts the services, restarts the ones that exit, and stops them all on request."""

    def __init__(self, services: dict[str, str], *, grace: float = 70.0, out: IO[str] = sys.stdout) -> None:
        self.services = [Service(name, command) for name, command in services.items()]
        self.grace = grace
        self.out = out
        self.width = max((len(name) for name in services), default=6)
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def say(self, name: str, text: str) -> None:
        """Print one line of ``name``'s output (or the supervisor's own, as ``system``)."""
        with self.lock:
            self.out.write(f"{time.strftime('%H:%M:%S')} {name.ljust(self.width)} | {text}\n")
            self.out.flush()

    def start(self, service: Service) -> None:
        """Start ``service`` in its own process group, pumping its output."""
        # This Python environment's scripts first, as ``uv run`` would put them.
        bin_dir = os.path.dirname(sys.executable)
        path = os.environ.get("PATH", "")
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{path}" if path else bin_dir}
        service.process = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {service.command}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        service.started_at = time.monotonic()
        self.say("system", f"{service.name} started (pid {service.process.pid})")
        service.pump = threading.Thread(target=self._pump, args=(service, service.process), daemon=True)
        service.pump.start()

    def _pump(self, service: Service, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self.say(service.name, raw.decode(errors="replace").rstrip("\n"))

    def run(self) -> int:
        """Run until :meth:`stop` is called; returns the exit status for the command."""
        for service in self.services:
            self.start(service)
        while not self.stopping.wait(0.2):
            now = time.monotonic()
            for service in self.services:
                process = service.process
                if process is not None and process.poll() is not None:
                    up_for = now - service.started_at
                    if up_for >= HEALTHY_AFTER:
                        service.backoff = MIN_BACKOFF
                    self.say(
                        "system",
                        f"{service.name} exited with code {process.returncode} after {up_for:.1f} s; "
                        f"restarting in {service.backoff:g} s",
                    )
                    service.process = None
                    service.next_start = now + service.backoff
                    service.backoff = min(MAX_BACKOFF, service.backoff * 2)
                elif process is None and now >= service.next_start:
                    service.restarts += 1
                    self.start(service)
        self._stop_all()
        return 0

    def stop(self) -> None:
        """Ask :meth:`run` to stop every service and return (safe from a signal handler)."""
        self.stopping.set()

    def _stop_all(self) -> None:
        running = [s for s in self.services if s.process is not None and s.process.poll() is None]
        for service in running:
            self.say("system", f"stopping {service.name}")
            _signal_group(service, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for service in running:
            assert service.process is not None
            try:
                service.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say("system", f"{service.name} did not stop within {self.grace:g} s; killing it")
                _signal_group(service, signal.SIGKILL)
                service.process.wait()
        for service in running:
            if service.pump is not None:
                service.pump.join(timeout=2)
        self.say("system", "all stopped")


def _signal_group(service: Service, sig: int) -> None:
    assert service.process is not None
    try:
        os.killpg(service.process.pid, sig)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    """``offload supervise [-f Procfile.dev] [--only a,b] [--pid-file F]``."""
    parser = argparse.ArgumentParser(prog="offload supervise", description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--procfile", type=Path, default=Path("Procfile.dev"))
    parser.add_argument("--only", default="", help="comma-separated process names (default: all)")
    parser.add_argument("--grace", type=float, default=70.0, help="seconds to wait for a graceful stop")
    parser.add_argument("--pid-file", type=Path, help="write this process's id here (for make down)")
    args = parser.parse_args(argv)
    services = read_procfile(args.procfile)
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - set(services))
        if unknown:
            parser.error(f"not in {args.procfile}: {', '.join(unknown)}")
        services = {name: services[name] for name in wanted}
    supervisor = Supervisor(services, grace=args.grace)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: supervisor.stop())
    if args.pid_file:
        args.pid_file.write_text(f"{os.getpid()}\n")
    try:
        return supervisor.run()
    finally:
        if args.pid_file:
            args.pid_file.unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())
