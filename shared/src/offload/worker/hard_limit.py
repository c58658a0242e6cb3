"""A hard time limit: a worker process ends itself when a job overstays its limit by a grace period.

Dramatiq's ``TimeLimit`` raises ``TimeLimitExceeded`` inside the job's thread, which only happens
while that thread runs Python bytecode: a job blocked in C (an image decoder, a socket read with no
timeout, a long ``time.sleep``) never sees it (Dramatiq's guide says as much), and would hold a
worker thread and its message until RabbitMQ's ``consumer_timeout``. Celery answers this with a
hard limit that kills the pool process; this is the same for Dramatiq's worker processes
(reliability-security.md §6.1 F11b).

When a job runs ``grace`` seconds past its time limit, the process logs which job it was and exits.
Dramatiq's main process then stops (it never keeps running with a dead child, dramatiq#260) and
the supervisor (compose, Kubernetes, ``make up``) starts it again. Every message the process held
is redelivered, marked as a new attempt; the overstaying job's deliveries end unfinished each time,
so after ``max_unfinished_attempts`` it is quarantined as ``dead`` instead of looping.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from dramatiq.middleware import Middleware

logger = logging.getLogger(__name__)

#: The exit status of a process that ended itself over a hard limit (EX_SOFTWARE).
HARD_LIMIT_EXIT = 70


class HardTimeLimit(Middleware):
    """Ends the worker process when any job runs ``grace`` seconds past its ``time_limit``.

    Args:
        grace: seconds a job may overrun its time limit before the process ends.
        interval: seconds between checks.
        exit: what ends the process (``os._exit``; tests pass a recorder).
    """

    def __init__(self, *, grace: float, interval: float = 1.0, exit: Callable[[int], Any] = os._exit) -> None:
        self.grace = grace
        self.interval = interval
        self._exit = exit
        self._running: dict[int, tuple[float, str, str]] = {}  # thread -> (deadline, message id, actor)
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def after_process_boot(self, _broker: Any) -> None:
        """Start the watchdog in each worker process."""
        threading.Thread(target=self._watch, name="offload-hard-time-limit", daemon=True).start()

    def before_process_stop(self, _broker: Any) -> None:
        """Stop watching: the process is shutting down on its own."""
        self._stopped.set()

    def before_process_message(self, broker: Any, message: Any) -> None:
        """Note when this thread's job must be over (its time limit plus the grace)."""
        limit_ms = message.options.get("time_limit") or broker.get_actor(message.actor_name).options.get("time_limit")
        if not limit_ms:
            return
        deadline = time.monotonic() + limit_ms / 1000 + self.grace
        with self._lock:
            self._running[threading.get_ident()] = (deadline, message.message_id, message.actor_name)

    def after_process_message(
        self,
        _broker: Any,
        _message: Any,
        *,
        result: Any = None,  # noqa: ARG002 - Dramatiq's hook signature
        exception: BaseException | None = None,  # noqa: ARG002
    ) -> None:
        """This thread's job is over, however it ended."""
        with self._lock:
            self._running.pop(threading.get_ident(), None)

    def after_skip_message(self, _broker: Any, _message: Any) -> None:
        """A skipped message is over too."""
        with self._lock:
            self._running.pop(threading.get_ident(), None)

    def overdue(self, now: float | None = None) -> list[tuple[str, str]]:
        """The ``(message id, actor)`` of every job past its hard limit now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return [(message_id, actor) for deadline, message_id, actor in self._running.values() if now > deadline]

    def _watch(self) -> None:
        while not self._stopped.wait(self.interval):
            late = self.overdue()
            if late:
                for message_id, actor in late:
                    logger.critical(
                        "Job %s (%s) ran %g s past its time limit and cannot be interrupted; "
                        "ending this worker process so that it is redelivered (and quarantined if it "
                        "keeps overstaying).",
                        message_id,
                        actor,
                        self.grace,
                    )
                logging.shutdown()
                self._exit(HARD_LIMIT_EXIT)
                return
