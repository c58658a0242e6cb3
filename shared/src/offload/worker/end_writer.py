"""Writing the ``succeeded`` ends of a worker process's jobs in batches, and acking each after its write.

A job's end is a Redis round trip on the job's thread, and its message is acked after it: in a
drain of no-op jobs the two round trips of a job (its start and its end) were most of what a
job cost the worker beyond bare Dramatiq. A thread that ran a job to success instead hands its
end to the process's :class:`EndWriter` and takes the next message. The writer's thread writes
every end handed to it since its last write in one pipelined round trip
(:meth:`~offload.status.lifecycle.Lifecycle.finish_succeeded_many`), and only then acks those
messages: the broker still forgets a message only once its job's end is in Redis (202 means the
same; at-least-once holds). The ack goes through Dramatiq's consumer (thread-safe: pika runs it on
the consumer's connection), gated by :meth:`EndWriter.gate`, which the worker's broker consults
for every ack (``offload.broker.build_broker``).

What changes for a watcher: a job's ``succeeded`` lands a round trip later (a millisecond or two),
and its ack after that. If Redis is unreachable the writer keeps the ends and tries again (their
messages stay unacked, held by the broker); if the process dies first, the broker redelivers
them and the jobs run again as redeliveries, as they would had the process died before a
synchronous write. If the consumer's connection was lost meanwhile the ack fails, the message is
redelivered, and its start finds the job ended and skips it.

Failures, retries, cancellations, and jobs with a callback URL, follow-ups or a concurrency slot
end synchronously as before: their ends start other work (a dead letter, a timer, a webhook, a
follow-up reading the result, the slot's next job) that must see the state first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dramatiq.middleware import Middleware

from offload.errors import StatusStoreUnavailable
from offload.status import StatusStore

logger = logging.getLogger(__name__)

#: Most ends written in one round trip.
MAX_BATCH = 256
#: Seconds the writer lets ends gather after the first one before it writes them (a round trip for
#: many: each write costs this process's CPU about the same whether it carries one end or fifty).
LINGER = 0.002
#: Seconds between tries while Redis is unreachable (doubling up to the last).
RETRY_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0)
#: Tries of one end that Redis refused (a script error, not an outage) before it is given up unacked.
MAX_REFUSALS = 3


@dataclass
class _End:
    message_id: str
    job_id: str
    attempt: int
    result: Any
    refusals: int = 0


class EndWriter:
    """Batches the ``succeeded`` ends of this process's jobs; acks their messages once written.

    Args:
        store: the status store the ends are written to.
    """

    def __init__(self, store: StatusStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: list[_End] = []
        #: Message id → its ack once Dramatiq asked for it (None until then), while its end is unwritten.
        self._held: dict[str, Callable[[], None] | None] = {}
        #: Messages whose end was given up: their ack is swallowed, so the broker redelivers them.
        self._abandoned: set[str] = set()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def submit(self, message_id: str, job_id: str, attempt: int, result: Any) -> None:
        """Queue the end of attempt ``attempt`` of ``job_id`` (``succeeded`` with ``result``); hold its ack."""
        with self._lock:
            self._held[message_id] = None
            self._pending.append(_End(message_id, job_id, attempt, result))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="offload-end-writer", daemon=True)
                self._thread.start()
            self._wake.notify()

    def gate(self, message_id: str, ack: Callable[[], None]) -> bool:
        """Keep ``ack`` until the message's end is written; False if it has none pending (ack now)."""
        with self._lock:
            if message_id in self._abandoned:
                self._abandoned.discard(message_id)
                return True
            if message_id not in self._held:
                return False
            self._held[message_id] = ack
            return True

    def pending(self) -> int:
        """Ends handed over and not written yet."""
        with self._lock:
            return len(self._held)

    def flush(self) -> None:
        """Write what is pending now, on the caller's thread (a stopping worker)."""
        while True:
            with self._lock:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            if not batch:
                return
            if not self._write(batch):
                with self._lock:
                    self._pending[:0] = batch
                return

    def stop(self) -> None:
        """Write what is pending (one try) and end the thread."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)
        self.flush()

    def _loop(self) -> None:
        failures = 0
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
            time.sleep(LINGER)
            with self._lock:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            if self._write(batch):
                failures = 0
                continue
            with self._lock:
                self._pending[:0] = batch  # first again, in order
            delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
            failures += 1
            with self._lock:
                if not self._stopping:
                    self._wake.wait(delay)

    def _write(self, batch: list[_End]) -> bool:
        """Write ``batch``; ack what was written. False if Redis was unreachable (nothing acked)."""
        try:
            written = self.store.lifecycle.finish_succeeded_many([(e.job_id, e.attempt, e.result) for e in batch])
        except StatusStoreUnavailable:
            logger.warning("Could not write %d job ends: the status store is unavailable; trying again.", len(batch))
            return False
        acks: list[Callable[[], None]] = []
        again: list[_End] = []
        with self._lock:
            for end, outcome in zip(batch, written, strict=True):
                if outcome is None:
                    end.refusals += 1
                    if end.refusals < MAX_REFUSALS:
                        again.append(end)
                        continue
                    logger.error("Giving up the end of job %s: its message stays unacked.", end.job_id)
                    if self._held.pop(end.message_id, None) is None:
                        self._abandoned.add(end.message_id)  # Dramatiq has not asked for its ack yet
                    continue
                ack = self._held.pop(end.message_id, None)
                if ack is not None:
                    acks.append(ack)
            self._pending.extend(again)
        for ack in acks:
            try:
                ack()
            except Exception:  # the connection went: the message comes back and its start skips it
                logger.warning("Acking a message after its job's end failed; it will be redelivered.", exc_info=True)
        return True


class EndWriterFlush(Middleware):
    """Writes the pending ends, and sends their acks, before a consumer of this process closes.

    Dramatiq stops a worker's job threads first and its consumers after: by the time a consumer
    thread stops, every end it will get is handed over, and its connection is still open to ack.
    """

    def __init__(self, writer: EndWriter) -> None:
        self.writer = writer

    def before_consumer_thread_shutdown(self, _broker: Any, thread: Any) -> None:
        """Write what is pending, then let the consumer's connection send the acks that released."""
        self.writer.flush()
        connection = getattr(getattr(thread, "consumer", None), "connection", None)
        if connection is not None:
            try:
                connection.process_data_events(time_limit=0)
            except Exception:  # a lost connection: its messages come back and their starts skip them
                logger.warning("Could not send the last acks before the consumer closed.", exc_info=True)

    def after_worker_shutdown(self, _broker: Any, _worker: Any) -> None:
        """End the writer's thread after a last write."""
        self.writer.stop()
