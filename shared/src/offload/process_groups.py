"""What is left of a process tree once its top process is gone, found and ended.

A Dramatiq service is a tree: the ``dramatiq`` main process forks its worker processes (and a
metrics "fork" process). If the main process dies without stopping them (SIGKILL, the kernel's
OOM killer), they keep consuming the queue: nothing tells them. An orchestrator ends them because
the container's PID namespace dies with its first process; systemd because of
``KillMode=control-group``. A supervisor on a plain machine has two handles on them:

- the **process group**: every process of a service starts in the group its top process leads
  (``start_new_session``), and keeps it unless it leaves on purpose; the group outlives its leader;
- **child subreaping** (Linux): a supervisor that is a subreaper becomes the parent of every
  orphaned descendant, including one that left the group, so it can see, end and reap it.

On Linux the process table comes from ``/proc``; elsewhere only the group is used (``killpg``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
#: ``prctl`` option that makes the caller the reaper of its orphaned descendants (Linux >= 3.4).
_PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class ProcessEntry:
    """One live (not zombie) process: its id, parent and process group."""

    pid: int
    ppid: int
    pgid: int


def has_process_table() -> bool:
    """True where ``/proc`` lists processes (Linux)."""
    return (_PROC / "self" / "stat").exists()


def become_subreaper() -> bool:
    """Make this process the parent of its descendants' orphans; False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _stat(pid: str) -> tuple[int, str, int, int] | None:
    """``(pid, state, ppid, pgid)`` of one process, or None if it has ended."""
    try:
        stat = (_PROC / pid / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(pid), fields[0], int(fields[1]), int(fields[2])


def _entries() -> Iterator[tuple[int, str, int, int]]:
    """``(pid, state, ppid, pgid)`` of every process in ``/proc`` (zombies included)."""
    for folder in _PROC.iterdir():
        if not folder.name.isdigit():
            continue
        entry = _stat(folder.name)
        if entry is not None:
            yield entry


def processes() -> list[ProcessEntry]:
    """Every live process (zombies, which run nothing and hold no queue, left out)."""
    return [ProcessEntry(pid, ppid, pgid) for pid, state, ppid, pgid in _entries() if state not in ("Z", "X")]


def group_alive(pgid: int) -> bool:
    """True while any live process is still in process group ``pgid``."""
    if has_process_table():
        return any(entry.pgid == pgid for entry in processes())
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _own_children() -> list[tuple[int, str, int, int]]:
    """``(pid, state, ppid, pgid)`` of this process's children (zombies included).

    Read from each thread's ``children`` list (a few small files), not the whole table, since the
    supervisor asks several times a second.
    """
    found = []
    for task in (_PROC / "self" / "task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue  # the thread ended while we looked
        found += [entry for entry in map(_stat, pids) if entry is not None]
    return found


def orphans(keep: Iterable[int]) -> list[ProcessEntry]:
    """This process's live children other than ``keep`` (the ones it started and still tracks).

    Under :func:`become_subreaper` these are descendants whose own parent died: leftovers.
    """
    if not has_process_table():
        return []
    kept = set(keep)
    return [
        ProcessEntry(pid, ppid, pgid)
        for pid, state, ppid, pgid in _own_children()
        if pid not in kept and state not in ("Z", "X")
    ]


def reap_orphans(keep: Iterable[int]) -> None:
    """Collect the exit status of ended children other than ``keep`` (whose ``Popen`` does it).

    A subreaper inherits orphans as children: without this, each one that ends stays a zombie.
    """
    if not has_process_table():
        return
    kept = set(keep)
    for pid, state, _, _ in _own_children():
        if pid not in kept and state in ("Z", "X"):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to every process of group ``pgid`` (none left is not an error)."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def signal_pid(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to one process (gone already is not an error)."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
