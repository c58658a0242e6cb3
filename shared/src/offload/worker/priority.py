"""CPU priority of a worker process: who waits least gets the processor first.

On one host (``make up``, a VM running several services) an API request, an email send and an image
decode compete for the same cores, and the kernel shares them equally unless told otherwise. So
worker processes start at a higher niceness (``OFFLOAD_WORKER_NICE``), in a ladder:

- the API stays at 0: its callers are waiting for an answer (F14: with an email worker draining
  beside it at equal priority, refusals under overload took up to 4.8 s; at 5, at most 1.9 s);
- email and webhooks at 5: latency-bound background work;
- media and reports at 15: CPU-heavy work that can wait a moment (F20: email kept 60-80% of its
  pace while 40 MP images decoded at equal priority, 96-104% with the ladder).

Every process still gets every cycle nobody else wants. In Kubernetes or Compose the per-container
CPU requests share a node's cores between containers; this setting still orders processes on one
host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path

logger = logging.getLogger(__name__)

#: Linux's autogroup of this process's session (``sched_autogroup_enabled``).
AUTOGROUP = Path("/proc/self/autogroup")


def yield_cpu(niceness: int) -> int:
    """Raise this process's niceness to ``niceness`` (never lower it: that needs privileges).

    Called from a service's Dramatiq ``setup()``, which runs in each worker process, never from
    :func:`offload.worker.build_worker` (tests build workers inside their own process).

    Returns:
        The niceness the process runs at afterwards.
    """
    current = os.nice(0)
    if niceness > current:
        current = os.nice(niceness - current)
        logger.info(
            "Worker process runs at niceness %d: processes at a lower one (the API) get the CPU first.", current
        )
    _nice_own_session(niceness)
    return current


def _nice_own_session(niceness: int) -> None:
    """Give the same niceness to this service's session, when it has one of its own.

    With autogroup scheduling (most desktop and server kernels), the CPU is shared between
    sessions first and by niceness only inside one, so a service that a supervisor started in a
    session of its own (``make up``, systemd) would not yield to the others. The session's own
    niceness is raised only when this process or its parent (Dramatiq's main process) leads it, so
    a worker run from an interactive shell never changes that shell's priority.
    """
    if os.getsid(0) not in (os.getpid(), os.getppid()):
        return
    current = session_nice()
    if current is not None and niceness > current:
        with contextlib.suppress(OSError):
            AUTOGROUP.write_text(str(niceness))


def session_nice() -> int | None:
    """The niceness of this process's autogroup, or None when autogroup scheduling does not apply.

    The kernel shows ``/autogroup-<id> nice <n>`` only for a process in the root CPU cgroup; in a
    container's own CPU cgroup (or with autogroup off) the file is empty or absent, and the
    cgroup's CPU weight decides instead.
    """
    try:
        match = re.search(r"nice\s+(-?\d+)", AUTOGROUP.read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None
