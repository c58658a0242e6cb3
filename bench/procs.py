"""Child processes the benchmark starts, and CPU accounting from ``/proc``.

Every child runs in its own session (``start_new_session``), so that it and the processes it forks
(gunicorn workers, Dramatiq worker processes) form one process group the benchmark can stop by its
id without touching anything else on the machine. Every wait is bounded.

CPU accounting reads ``/proc/stat`` (the whole machine) and ``/proc/<pid>/stat`` (the benchmark's
children, RabbitMQ and Redis, found by the port they listen on), so that each result can say what
limited it: a busy machine, or waiting.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bench.config import ROOT

_CLK = os.sysconf("SC_CLK_TCK")


class Child:
    """One process the benchmark started, with its output in a log file.

    Args:
        name: a short name, also the log file's name.
        argv: the command.
        env: its environment.
        logs: the folder for its log.
    """

    _running: list[Child] = []

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        Child._running.append(self)

    @property
    def pid(self) -> int:
        """The child's pid, which is also its process group's id."""
        return self.proc.pid

    def alive(self) -> bool:
        """True while the child itself runs."""
        return self.proc.poll() is None

    def group(self) -> list[int]:
        """Pids of every live process in the child's process group."""
        return group_pids(self.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Ask the child to stop with ``sig`` (sent to the child only; it stops its own workers).

        After ``timeout`` seconds, or if processes of its group outlive it, the whole group is
        killed. Returns the child's exit code (None if it had to be killed and did not exit).
        """
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        if self.group():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        self._log.close()
        if self in Child._running:
            Child._running.remove(self)
        return self.proc.returncode

    def tail(self, lines: int = 20) -> str:
        """The last lines of the child's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @classmethod
    def stop_all(cls) -> None:
        """Stop every child still running (on exit or interruption)."""
        for child in list(cls._running):
            child.stop(timeout=10)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(ready: Callable[[], bool], child: Child, timeout: float, what: str) -> None:
    """Poll ``ready`` every 100 ms until it is true; raise if ``child`` dies or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{child.name} did not {what} within {timeout:.0f} s:\n{child.tail()}")


def wait_http(url: str, child: Child, timeout: float = 60.0) -> None:
    """Wait until ``url`` answers 200.

    Raises:
        RuntimeError: the child died or the URL did not answer within ``timeout``.
    """

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    _wait_ready(answers, child, timeout, f"answer {url}")


def wait_port(port: int, child: Child, timeout: float = 30.0) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:``port``.

    Raises:
        RuntimeError: the child died or the port did not open within ``timeout``.
    """

    def listens() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                return True
        except OSError:
            return False

    _wait_ready(listens, child, timeout, f"listen on port {port}")


# -- /proc ------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces; fields after it are plain.
    return raw[raw.rindex(")") + 2 :].split()


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) ``pid`` has used so far; 0 if it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK


def group_pids(pgid: int) -> list[int]:
    """Pids of the live processes in process group ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on TCP ``port`` (loopback or any address), if any."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{entry}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/fd/{fd}") in inodes:
                        return int(entry)
    return None


def machine_cpu() -> tuple[float, float]:
    """``(busy, total)`` CPU seconds of the whole machine since boot (all cores)."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = values
    busy = user + nice + system + irq + softirq + steal
    return busy / _CLK, (busy + idle + iowait) / _CLK


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU counters at one instant."""

    at: float
    busy: float
    total: float
    groups: dict[str, float]


@dataclass(frozen=True)
class CpuUsage:
    """CPU used between two snapshots: per group in cores (1.0 = one core busy the whole time)."""

    wall: float
    cores: int
    #: Fraction of the machine that was busy (0-1).
    machine_busy: float
    #: Cores used by each named group.
    groups: dict[str, float]
    #: Cores used by everything else on the machine (other users: noise).
    other: float

    def busy_cpu_seconds(self) -> float:
        """CPU seconds the whole machine spent busy (other users' processes included)."""
        return self.machine_busy * self.cores * self.wall

    def accounted_cpu_seconds(self) -> float:
        """CPU seconds of the named groups only (what the measured system itself used)."""
        return sum(self.groups.values()) * self.wall

    def describe(self) -> str:
        """``machine 97% busy; api 1.21 cores, rabbitmq 0.40, ...`` for the notes."""
        parts = ", ".join(f"{name} {value:.2f}" for name, value in self.groups.items())
        return f"machine {self.machine_busy:.0%} busy of {self.cores} cores; in cores: {parts}, other {self.other:.2f}"

    def as_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "wall_s": round(self.wall, 3),
            "machine_busy": round(self.machine_busy, 3),
            "cores": self.cores,
            "groups_cores": {k: round(v, 3) for k, v in self.groups.items()},
            "other_cores": round(self.other, 3),
        }


@dataclass
class CpuMeter:
    """Snapshots the machine and named groups of processes (each a function giving its pids)."""

    groups: dict[str, Callable[[], list[int]]] = field(default_factory=dict)

    def snapshot(self) -> CpuSnapshot:
        """Read every counter now."""
        busy, total = machine_cpu()
        groups = {name: sum(proc_cpu(pid) for pid in pids()) for name, pids in self.groups.items()}
        return CpuSnapshot(time.monotonic(), busy, total, groups)

    @staticmethod
    def usage(start: CpuSnapshot, end: CpuSnapshot) -> CpuUsage:
        """What was used between two snapshots."""
        wall = max(end.at - start.at, 1e-9)
        cores = os.cpu_count() or 1
        total = max(end.total - start.total, 1e-9)
        busy = end.busy - start.busy
        groups = {name: max(0.0, (end.groups[name] - start.groups.get(name, 0.0)) / wall) for name in end.groups}
        other = max(0.0, busy / wall - sum(groups.values()))
        return CpuUsage(wall=wall, cores=cores, machine_busy=busy / total, groups=groups, other=other)


def standard_groups(**children: Callable[[], list[int]]) -> dict[str, Callable[[], list[int]]]:
    """``children`` plus RabbitMQ, Redis and the benchmark process itself."""
    rabbit = listener_pid(5672)
    redis_pid = listener_pid(6379)
    return {
        **children,
        "rabbitmq": lambda: [rabbit] if rabbit else [],
        "redis": lambda: [redis_pid] if redis_pid else [],
        "bench": lambda: [os.getpid()],
    }


def limit_line(usage: CpuUsage) -> str:
    """A one-line guess at what limited a measurement, from its CPU usage."""
    if usage.machine_busy >= 0.9:
        verdict = "CPU-bound"
    elif usage.machine_busy >= 0.75:
        verdict = "mostly CPU-bound"
    else:
        verdict = "not CPU-bound (waiting on round trips or I/O)"
    return f"{verdict}: {usage.describe()}"


#: Seconds :func:`wait_quiet` may wait before each measurement (set from ``--quiet-wait``).
QUIET_WAIT = {"seconds": 60.0}
#: What each :func:`wait_quiet` call found: (label, seconds waited, busy fraction when it went on).
QUIET_LOG: list[tuple[str, float, float]] = []


def wait_quiet(label: str, threshold: float = 0.2, sample: float = 1.0) -> float:
    """Wait (at most ``QUIET_WAIT`` seconds) until the machine is less than ``threshold`` busy.

    The machine is shared: another user's test suite can take a core for minutes. Measuring while
    it runs makes both sides of a ratio slower by different amounts, so each measurement starts
    when the machine is idle if that happens soon enough, and the notes say when it did not.
    Returns the busy fraction of the last one-second sample.
    """
    started = time.monotonic()
    deadline = started + QUIET_WAIT["seconds"]
    while True:
        busy0, total0 = machine_cpu()
        time.sleep(sample)
        busy1, total1 = machine_cpu()
        busy = (busy1 - busy0) / max(total1 - total0, 1e-9)
        if busy < threshold or time.monotonic() >= deadline:
            QUIET_LOG.append((label, time.monotonic() - started - sample, busy))
            return busy


def connections_by_process(pids: list[int], port: int) -> dict[int, int]:
    """Established TCP connections to local ``port`` held by each of ``pids`` (server side)."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                cols = row.split()
                if cols[3] == "01" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    established.add(f"socket:[{cols[9]}]")
    counts = {}
    for pid in pids:
        held = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in established:
                        held += 1
        counts[pid] = held
    return counts
