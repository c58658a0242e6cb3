"""Issue 22: the scheduler fires tenants' schedules by their missed-tick policy, once per tick, on a simulated clock.

The processes (API, two schedulers, a failover) are in ``tests/system/test_user_schedules.py``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from offload.contracts import SYSTEM_QUEUE
from offload.publish import Publisher
from offload.scheduler import Scheduler, user_run_id
from offload.status import StatusStore
from offload.status.user_schedules import UserSchedules
from offload.user_schedules import Timing, millis, moment, validate
from tests.helpers import free_port
from tests.support import queue_depth

START = datetime(2026, 11, 23, 8, 0, 30, tzinfo=UTC)


class Clock:
    """A simulated clock."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def _make(publisher: Publisher, schedule_id: str, **fields: Any) -> UserSchedules:
    schedules = UserSchedules(publisher.store)
    definition = validate({"job": {"type": "system.noop"}, **fields}, publisher.preparer, tenant="acme")
    schedules.create(schedule_id, tenant="acme", definition=definition.stored(), now=millis(START))
    return schedules


@pytest.mark.parametrize(
    ("missed", "fired_ticks", "missed_count"),
    [("skip", [], 5), ("run_once", [5], 4), ("run_all", [3, 4, 5], 2)],
)
def test_ticks_missed_while_no_scheduler_ran_follow_the_schedules_policy(
    publisher: Publisher, missed: str, fired_ticks: list[int], missed_count: int
) -> None:
    schedule_id = f"policy-{missed}"
    schedules = _make(publisher, schedule_id, interval=60, missed=missed, catch_up_limit=3)
    clock = Clock(START + timedelta(minutes=5, seconds=50))  # five ticks passed while none ran, the last 50 s ago
    scheduler = Scheduler(publisher, [], clock=clock, lock_ttl=1)
    fired = scheduler.step()
    assert fired == [user_run_id(schedule_id, START + timedelta(minutes=n)) for n in fired_ticks]
    stored = schedules.get(schedule_id)
    assert stored is not None and stored.missed == missed_count
    assert stored.last_tick == millis(START + timedelta(minutes=5))
    assert scheduler.step() == []  # handled: nothing more until the next tick
    clock.now = START + timedelta(minutes=6, seconds=2)  # the next tick, on time: every policy runs it
    assert scheduler.step() == [user_run_id(schedule_id, START + timedelta(minutes=6))]
    record = publisher.get(user_run_id(schedule_id, START + timedelta(minutes=6)))
    assert record is not None and record.tenant == "acme" and record.type == "system.noop"


def test_two_schedulers_that_both_lead_enqueue_a_tick_once_and_a_cron_follows_its_zone(publisher: Publisher) -> None:
    schedules = _make(publisher, "berlin", cron="0 10 * * *", timezone="Europe/Berlin")
    clock = Clock(datetime(2026, 11, 23, 9, 0, 1, tzinfo=UTC))  # 10:00:01 in Berlin (UTC+1 in November)
    first, second = (Scheduler(publisher, [], clock=clock, identity=name) for name in "AB")
    stale = schedules.get("berlin")  # what a second scheduler read before the first one's fire landed
    tick = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert first.step() == [user_run_id("berlin", tick)]
    second.leading = True  # a paused process waking up, still believing it leads
    assert stale is not None
    again = second._fire_user(stale, clock.now)
    assert again == [user_run_id("berlin", tick)]
    assert len(publisher.store.queries.list_jobs(tenant="acme", limit=10).records) == 1
    assert queue_depth(SYSTEM_QUEUE) == 1  # the replayed id was not sent again


def test_a_paused_schedule_does_not_fire_and_a_broken_one_is_noted_without_stopping_the_others(
    publisher: Publisher,
) -> None:
    schedules = _make(publisher, "paused", interval=60)
    clock = Clock(START + timedelta(minutes=2, seconds=1))
    scheduler = Scheduler(publisher, [], clock=clock)
    schedules.pause("paused", now=millis(START))
    assert scheduler.step() == []
    schedules.resume("paused", now=millis(clock.now))  # the paused ticks are not owed
    assert scheduler.step() == []
    clock.now += timedelta(minutes=1)
    assert scheduler.step() == [user_run_id("paused", START + timedelta(minutes=3))]
    # A definition its contract now refuses (as after a contract change) is noted and skipped.
    bad = {"job": {"type": "system.sleep", "payload": {"ms": -1}}, "interval": 60}
    schedules.create("refused", tenant="acme", definition=bad, now=millis(clock.now))
    schedules.create("unreadable", tenant="acme", definition={"interval": "soon"}, now=millis(clock.now))
    clock.now += timedelta(minutes=1)
    assert scheduler.step() == [user_run_id("paused", START + timedelta(minutes=4))]
    refused = schedules.get("refused")
    assert refused is not None and refused.last_error is not None and "job" in refused.last_error
    assert refused.last_job_id is None and refused.last_tick > millis(START)


def test_the_scheduler_loop_outlives_redis_being_unreachable(
    publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = StatusStore.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    broken = Publisher(store=unreachable, preparer=publisher.preparer, sequence=publisher.sequence)
    scheduler = Scheduler(broken, [], lock_ttl=0.3)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(stop,))
    thread.start()
    time.sleep(0.8)  # a few steps, each failing on Redis
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert "Scheduler step failed" in caplog.text  # logged and tried again, not a crash


def test_interval_and_cron_ticks_count_from_their_anchor_and_keep_only_the_latest() -> None:
    anchor = datetime(2026, 11, 23, 8, 0, 0, 250_000, tzinfo=UTC)
    every = Timing(None, 10, "UTC", anchor)
    assert every.next_run(anchor) == anchor + timedelta(seconds=10)
    tick = anchor + timedelta(seconds=30)
    assert moment(millis(tick)) == tick  # stored and read back, a tick stays exactly itself
    assert every.due(tick, tick, keep=5) == ([], 0)  # a tick already handled is not due again
    due, total = every.due(anchor, anchor + timedelta(seconds=95), keep=3)
    assert total == 9 and due == [anchor + timedelta(seconds=s) for s in (70, 80, 90)]
    hourly = Timing("0 * * * *", None, "Asia/Kolkata", anchor)  # UTC+5:30: its hours fall on UTC's half hours
    due, total = hourly.due(anchor, anchor + timedelta(hours=3), keep=2)
    assert total == 3 and [t.astimezone(UTC).strftime("%H:%M") for t in due] == ["09:30", "10:30"]
