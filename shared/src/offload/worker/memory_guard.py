"""The worker memory guard: a process that grew past a limit is recycled gracefully after a job.

Python rarely gives memory back to the kernel once a job has touched a lot of it (fragmented
arenas, caches, a leak in a C library), so a long-lived worker process creeps upwards until the
kernel's OOM killer takes it mid-job. Celery's ``worker_max_memory_per_child`` and Remoulade's
max-memory middleware recycle the process between jobs instead; this does the same for Dramatiq.

After each job the process reads its resident set size; past ``limit_mb`` it asks Dramatiq's main
process to reload (SIGHUP): every worker process gets SIGTERM, finishes its running jobs (within
``--worker-shutdown-timeout``), requeues what it had prefetched and exits, and the main process
starts fresh ones. Nothing is lost or redone: prefetched messages go back to the queue unstarted.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from dramatiq.middleware import Middleware

logger = logging.getLogger(__name__)


def resident_bytes() -> int:
    """This process's resident set size now (``/proc/self/statm``; 0 where there is none)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def reload_worker_processes() -> None:
    """Ask Dramatiq's main process (our parent) to restart its worker processes gracefully."""
    os.kill(os.getppid(), signal.SIGHUP)


class MemoryGuard(Middleware):
    """Recycles the worker process once, gracefully, when its memory passes ``limit_mb`` after a job.

    Args:
        limit_mb: the resident memory (MiB) past which the process is recycled; 0 turns it off.
        measure: reads the process's resident bytes (tests pass their own).
        recycle: starts the graceful recycle (tests pass a recorder).
        on_recycle: called once when a recycle starts (the metrics count it).
    """

    def __init__(
        self,
        *,
        limit_mb: int,
        measure: Callable[[], int] = resident_bytes,
        recycle: Callable[[], None] = reload_worker_processes,
        on_recycle: Callable[[], None] | None = None,
    ) -> None:
        self.limit = limit_mb * 1024 * 1024
        self.measure = measure
        self.recycle = recycle
        self.on_recycle = on_recycle
        self.recycling = False
        self._lock = threading.Lock()

    def after_process_message(
        self,
        _broker: Any,
        message: Any,
        *,
        result: Any = None,  # noqa: ARG002 - Dramatiq's hook signature
        exception: BaseException | None = None,  # noqa: ARG002
    ) -> None:
        """Measure the process after each job and recycle it once if it grew past the limit."""
        if not self.limit or self.recycling:
            return
        used = self.measure()
        if used <= self.limit:
            return
        with self._lock:  # two threads ending jobs at once must not both recycle: a second SIGHUP kills
            if self.recycling:
                return
            self.recycling = True
        logger.warning(
            "Worker process uses %d MiB after job %s, over OFFLOAD_WORKER_MAX_MEMORY_MB (%d); recycling it gracefully.",
            used // (1024 * 1024),
            getattr(message, "message_id", "?"),
            self.limit // (1024 * 1024),
        )
        if self.on_recycle is not None:
            self.on_recycle()
        self.recycle()
