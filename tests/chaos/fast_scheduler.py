"""``offload-scheduler`` on a fast clock, for scenario F19: ``python -m tests.chaos.fast_scheduler``.

The shipped schedules tick hourly or daily; this process runs the product's :class:`Scheduler`
(leader lock, tick-derived job ids, catch-up) unchanged, with one schedule ticking every minute
on a clock that runs ``CHAOS_CLOCK_SPEED`` times faster than real time from ``CHAOS_CLOCK_EPOCH``
(shared by every scheduler process of a test, so they agree on the ticks). Each run is a
``system.noop`` echoing its tick. Stops on SIGTERM like the real one.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

from offload.contracts import Schedule
from offload.logs import configure_logging
from offload.publish import Publisher
from offload.scheduler import Scheduler, run_until_signalled
from offload.settings import load_settings

#: The schedule every fast scheduler runs.
TICK = Schedule(
    name="chaos.tick",
    cron="* * * * *",
    job_type="system.noop",
    description="A run a simulated minute.",
    tick_field="echo",
)
#: Simulated time at the epoch (a fixed, whole minute).
BASE = datetime(2030, 1, 1, tzinfo=UTC)


def clock(epoch: float, speed: float) -> datetime:
    """The simulated now: ``BASE`` plus the real seconds since ``epoch`` times ``speed``."""
    return BASE + timedelta(seconds=(time.time() - epoch) * speed)


def main() -> int:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    epoch, speed = float(os.environ["CHAOS_CLOCK_EPOCH"]), float(os.environ["CHAOS_CLOCK_SPEED"])
    publisher = Publisher.from_settings(settings)
    scheduler = Scheduler(
        publisher,
        [TICK],
        lock_ttl=settings.scheduler_lock_ttl,
        tenant=settings.scheduler_tenant,
        clock=lambda: clock(epoch, speed),
    )
    return run_until_signalled(scheduler, publisher)


if __name__ == "__main__":
    raise SystemExit(main())
