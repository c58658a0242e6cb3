"""``offload supervise``: run a Procfile's processes like an orchestrator would, for ``make up``.

honcho and foreman stop everything when one process exits; an orchestrator (compose's
``restart: unless-stopped``, Kubernetes) starts it again. This does the latter, on one machine:

- every process of the Procfile runs in a process group of its own, through ``/bin/sh -c``;
- its output lines are prefixed with the time and its name, like honcho's;
- a process that exits while the suite runs is started again after a backoff (1 s, doubling to
  30 s; back to 1 s once it has stayed up a minute), and the restart is logged;
- before it starts again, whatever is left of its last run is ended: its process group, and (on
  Linux, where the supervisor is the subreaper of its descendants) any orphan that left the group.
  A ``dramatiq`` main process killed by SIGKILL or the OOM killer leaves its worker processes
  consuming; they get SIGTERM, then SIGKILL after ``--leftover-grace`` seconds, so a queue never
  has a stale worker beside the new one;
- SIGINT (Ctrl-C) or SIGTERM (``make down``) stops every process gracefully: SIGTERM to each
  service's top process (which stops its own tree; a leftover with no top process gets it
  directly), then SIGKILL to each whole group and orphan still alive after ``--grace`` seconds
  (the workers' own shutdown timeout is 60 s). It returns only once nothing it started is alive.

supervisord 4.3 (``stopasgroup``/``killasgroup``) and circus 0.19 (``stop_children``) were tried
for this and both leave a SIGKILLed main process's children running, beside the restarted one
and after they stop: a production supervisor must end the whole group as containers (PID
namespace) and systemd (``KillMode=control-group``) do.

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

from offload.process_groups import (
    become_subreaper,
    group_alive,
    orphans,
    processes,
    reap_orphans,
    signal_group,
    signal_pid,
)

#: Seconds before the first restart; doubled after each quick exit, up to :data:`MAX_BACKOFF`.
MIN_BACKOFF = 1.0
MAX_BACKOFF = 30.0
#: A process that stayed up this long is healthy again: its next restart waits :data:`MIN_BACKOFF`.
HEALTHY_AFTER = 60.0
#: Seconds what is left of a dead service's run has to stop after SIGTERM before SIGKILL.
LEFTOVER_GRACE = 10.0


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
    #: The process group of the current or last run, kept until no process of it is alive.
    group: int | None = None
    #: Orphans of the last run outside its group (reparented to the supervisor), being ended.
    strays: set[int] = field(default_factory=set)
    #: When what is left of the last run gets SIGKILL (0: not being ended).
    end_by: float = 0.0
    started_at: float = 0.0
    backoff: float = MIN_BACKOFF
    restarts: int = 0
    next_start: float = 0.0
    pump: threading.Thread | None = field(default=None, repr=False)


class Supervisor:
    """Starts the services, restarts the ones that exit, and stops them all on request."""

    def __init__(
        self,
        services: dict[str, str],
        *,
        grace: float = 70.0,
        leftover_grace: float = LEFTOVER_GRACE,
        out: IO[str] = sys.stdout,
    ) -> None:
        self.services = [Service(name, command) for name, command in services.items()]
        self.grace = grace
        self.leftover_grace = leftover_grace
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
        service.group = service.process.pid  # start_new_session: it leads a group of its own
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
        become_subreaper()
        for service in self.services:
            self.start(service)
        while not self.stopping.wait(0.2):
            now = time.monotonic()
            for service in self.services:
                process = service.process
                if process is not None and process.poll() is not None:
                    self._exited(service, process, now)
                elif process is None and self._leftovers_ended(service, now) and now >= service.next_start:
                    service.restarts += 1
                    self.start(service)
            reap_orphans(self._leaders())
        self._stop_all()
        return 0

    def stop(self) -> None:
        """Ask :meth:`run` to stop every service and return (safe from a signal handler)."""
        self.stopping.set()

    def _leaders(self) -> list[int]:
        return [s.process.pid for s in self.services if s.process is not None]

    def _groups(self) -> set[int]:
        return {s.group for s in self.services if s.group is not None}

    def _exited(self, service: Service, process: subprocess.Popen[bytes], now: float) -> None:
        """``service``'s top process ended: schedule its restart and end what is left of its run."""
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
        in_group = [entry.pid for entry in processes() if entry.pgid == service.group]
        # Orphans in another service's group are that service's; the rest left their group.
        service.strays = {entry.pid for entry in orphans(self._leaders()) if entry.pgid not in self._groups()}
        if not in_group and not service.strays:
            return
        left = sorted([*in_group, *service.strays])
        self.say(
            "system",
            f"{service.name}: {len(left)} process(es) of its last run still alive "
            f"(pids {', '.join(map(str, left))}); ending them before it starts again",
        )
        self._signal_leftovers(service, signal.SIGTERM)
        service.end_by = now + self.leftover_grace

    def _leftovers_ended(self, service: Service, now: float) -> bool:
        """True once no process of ``service``'s last run is alive; SIGKILLs them past their grace."""
        if service.group is None:
            return True
        service.strays &= {entry.pid for entry in orphans(self._leaders())}
        if not group_alive(service.group) and not service.strays:
            if service.end_by:
                self.say("system", f"{service.name}: what was left of its last run has ended")
            service.group, service.end_by = None, 0.0
            return True
        if service.end_by and now >= service.end_by:
            self.say(
                "system", f"{service.name}: its last run's processes outlived {self.leftover_grace:g} s; killing them"
            )
            self._signal_leftovers(service, signal.SIGKILL)
            service.end_by = now + self.leftover_grace
        return False

    def _signal_leftovers(self, service: Service, sig: signal.Signals) -> None:
        if service.group is not None:
            signal_group(service.group, sig)
        for pid in service.strays:
            signal_pid(pid, sig)

    def _alive(self) -> list[Service]:
        """The services with any process alive (their run's group, or strays of it)."""
        strays = {entry.pid for entry in orphans(self._leaders())}
        alive = []
        for service in self.services:
            if service.process is not None and service.process.poll() is None:
                alive.append(service)
                continue
            service.strays &= strays
            if (service.group is not None and group_alive(service.group)) or service.strays:
                alive.append(service)
        return alive

    def _stop_all(self) -> None:
        """SIGTERM to every service, SIGKILL after the grace to what is left; returns once none is alive."""
        for service in self._alive():
            self.say("system", f"stopping {service.name}")
        asked: set[int] = set()  # the top processes and leftovers already sent SIGTERM
        deadline = time.monotonic() + self.grace
        while self._ask_to_stop(asked) and time.monotonic() < deadline:
            reap_orphans(self._leaders())
            time.sleep(0.1)
        running = self._alive()
        if running or orphans(self._leaders()):
            for service in running:
                self.say("system", f"{service.name} did not stop within {self.grace:g} s; killing it")
                self._signal_leftovers(service, signal.SIGKILL)
            if left := orphans(self._leaders()):
                pids = ", ".join(str(entry.pid) for entry in left)
                self.say("system", f"orphaned processes {pids} did not stop within {self.grace:g} s; killing them")
            for entry in left:
                signal_pid(entry.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10.0
            while (self._alive() or orphans(self._leaders())) and time.monotonic() < deadline:
                reap_orphans(self._leaders())
                time.sleep(0.1)
        for service in self.services:
            if service.pump is not None:
                service.pump.join(timeout=2)
        reap_orphans(self._leaders())
        self.say("system", "all stopped")

    def _ask_to_stop(self, asked: set[int]) -> bool:
        """SIGTERM, once, to each top process still up, and to each process left without one.

        A top process stops its own tree gracefully: a second SIGTERM straight to a Dramatiq
        worker process (as killpg would send) makes it quit mid-job. What has no top process (it
        died, before or during the stop) is asked directly. Returns False once nothing is alive.
        """
        running = self._alive()
        for service in running:
            process = service.process
            if process is not None and process.poll() is None:
                if process.pid not in asked:
                    signal_pid(process.pid, signal.SIGTERM)
                    asked.add(process.pid)
                continue
            left = [entry.pid for entry in processes() if entry.pgid == service.group] + sorted(service.strays)
            for pid in left:
                if pid not in asked:
                    signal_pid(pid, signal.SIGTERM)
                    asked.add(pid)
        strays = [entry.pid for entry in orphans(self._leaders()) if entry.pgid not in self._groups()]
        for pid in strays:
            if pid not in asked:
                signal_pid(pid, signal.SIGTERM)
                asked.add(pid)
        return bool(running or strays)


def main(argv: list[str] | None = None) -> int:
    """``offload supervise [-f Procfile.dev] [--only a,b] [--pid-file F]``."""
    parser = argparse.ArgumentParser(prog="offload supervise", description=__doc__.splitlines()[0])
    parser.add_argument("-f", "--procfile", type=Path, default=Path("Procfile.dev"))
    parser.add_argument("--only", default="", help="comma-separated process names (default: all)")
    parser.add_argument("--grace", type=float, default=70.0, help="seconds to wait for a graceful stop")
    parser.add_argument(
        "--leftover-grace",
        type=float,
        default=LEFTOVER_GRACE,
        help="seconds what is left of a dead process's tree has after SIGTERM, before SIGKILL and its restart",
    )
    parser.add_argument("--pid-file", type=Path, help="write this process's id here (for make down)")
    args = parser.parse_args(argv)
    services = read_procfile(args.procfile)
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - set(services))
        if unknown:
            parser.error(f"not in {args.procfile}: {', '.join(unknown)}")
        services = {name: services[name] for name in wanted}
    supervisor = Supervisor(services, grace=args.grace, leftover_grace=args.leftover_grace)
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
