"""The promoter thread sleeps between polls, but a nudge (a job with a callback URL ended) wakes it."""

from __future__ import annotations

import threading
import time
from typing import Any, cast

from offload.worker.promoter import POLL_INTERVAL, DuePromoter, PromoterMiddleware


class CountingPromoter:
    """Stands in for :class:`DuePromoter` (pure loop logic: no Redis needed to test the wake-up)."""

    def __init__(self) -> None:
        self.runs = 0
        self.ran = threading.Event()

    def promote_due(self) -> int:
        return 0

    def migrate_layout_once(self) -> None:
        pass

    def queue_webhooks(self) -> int:
        self.runs += 1
        self.ran.set()
        return 0

    def trim_if_due(self) -> None:
        pass

    def unpark_if_due(self) -> int:
        return 0

    def recover_stalled_if_due(self) -> int:
        return 0

    def wake_waiting_if_due(self) -> int:
        return 0

    def seconds_until_due(self) -> float:
        return 30.0  # nothing due for a long time: only a nudge can make it run again


def test_a_nudge_runs_the_loop_at_once_and_shutdown_does_not_wait_for_the_poll() -> None:
    fake = CountingPromoter()
    middleware = PromoterMiddleware(cast(DuePromoter, fake))
    broker: Any = None
    middleware.after_worker_boot(broker, None)
    try:
        assert fake.ran.wait(5)
        fake.ran.clear()
        runs = fake.runs
        middleware.nudge()
        assert fake.ran.wait(POLL_INTERVAL * 20)  # woken, not waiting out its 30 s sleep
        assert fake.runs == runs + 1
    finally:
        started = time.monotonic()
        middleware.before_worker_shutdown(broker, None)
    assert time.monotonic() - started < 5 and middleware.thread is not None and not middleware.thread.is_alive()
