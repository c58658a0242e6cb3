"""The scheduler: cron arithmetic, one active instance, one run per tick, catch-up (issue 6, F19)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from offload import cron
from offload.contracts import BUILT_IN, SCHEDULES, Schedule
from offload.errors import BrokerUnavailable
from offload.publish import Publisher
from offload.scheduler import Scheduler, run_id

HOURLY = Schedule(name="test.hourly", cron="0 * * * *", job_type="system.noop", description="A test schedule.")


def test_every_shipped_schedule_parses_and_names_a_registered_job_type() -> None:
    for schedule in SCHEDULES:
        cron.parse(schedule.cron)
        assert schedule.job_type in BUILT_IN and BUILT_IN.get(schedule.job_type).internal
    with pytest.raises(ValueError, match="not a cron expression"):
        cron.parse("every hour")


def test_next_run_and_the_ticks_due_follow_the_time_zone_and_dst() -> None:
    now = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # the night of 29 March has no 02:30 in Berlin
    daily = cron.next_run("30 2 * * *", now, "Europe/Berlin")
    assert daily.isoformat() == "2026-03-29T03:30:00+02:00"  # pendulum moves it past the gap, once
    assert cron.next_run("0 * * * *", datetime(2026, 11, 23, 4, 37, tzinfo=UTC), "UTC").hour == 5
    since, until = datetime(2026, 11, 23, 1, 37, tzinfo=UTC), datetime(2026, 11, 23, 4, 37, tzinfo=UTC)
    assert cron.due("0 * * * *", since, until, "UTC") == ([datetime(2026, 11, 23, 4, 0, tzinfo=UTC)], 3)
    assert cron.due("0 * * * *", until - timedelta(minutes=30), until, "UTC") == ([], 0)


class Clock:
    """A simulated clock the schedulers share."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_over_a_simulated_day_each_hourly_tick_is_enqueued_once_even_when_the_active_one_dies(
    publisher: Publisher,
) -> None:
    clock = Clock(datetime(2026, 11, 22, 23, 59, tzinfo=UTC))
    active = Scheduler(publisher, [HOURLY], lock_ttl=0.3, clock=clock, identity="A", tenant="acme")
    standby = Scheduler(publisher, [HOURLY], lock_ttl=0.3, clock=clock, identity="B", tenant="acme")
    enqueued: list[str] = []
    alive = [active, standby]
    for minute in range(0, 24 * 60):
        clock.now = datetime(2026, 11, 22, 23, 59, tzinfo=UTC) + timedelta(minutes=minute)
        if clock.now == datetime(2026, 11, 23, 10, 0, tzinfo=UTC):
            alive.remove(active)  # killed at the 10:00 tick, before enqueueing it; its lock stays
        if clock.now == datetime(2026, 11, 23, 10, 5, tzinfo=UTC):
            time.sleep(0.4)  # the dead one's lock expires; simulated time stands still meanwhile
        for scheduler in alive:
            enqueued += scheduler.step()
    assert standby.leading and not any(s.leading for s in alive if s is not standby)
    ticks = [datetime(2026, 11, 23, hour, tzinfo=UTC) for hour in range(24)]
    assert sorted(enqueued) == sorted(run_id(HOURLY, tick) for tick in ticks)  # each tick once, 10:00 too
    records = [publisher.get(job_id) for job_id in enqueued]
    assert all(r is not None and r.type == "system.noop" and r.tenant == "acme" for r in records)
    # Two schedulers that both think they lead still make one job per tick.
    again = standby._enqueue(HOURLY, ticks[3])
    assert (
        again == run_id(HOURLY, ticks[3])
        and len(publisher.store.queries.list_jobs(tenant="acme", limit=100).records) == 24
    )


def test_a_tick_the_broker_refused_is_enqueued_when_it_is_back_and_a_new_install_backfills_nothing(
    publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(datetime(2026, 11, 23, 8, 30, tzinfo=UTC))
    scheduler = Scheduler(publisher, [HOURLY], clock=clock, tenant="acme")
    assert scheduler.step() == []  # first start: remembers now, no run for 08:00
    clock.now = datetime(2026, 11, 23, 9, 0, 20, tzinfo=UTC)
    real_enqueue = publisher.enqueue

    def refuse(*args: object, **kwargs: object) -> None:
        raise BrokerUnavailable("The broker is down.")

    monkeypatch.setattr(publisher, "enqueue", refuse)
    assert scheduler.step() == []
    monkeypatch.setattr(publisher, "enqueue", real_enqueue)
    clock.now = datetime(2026, 11, 23, 9, 1, tzinfo=UTC)
    assert scheduler.step() == [run_id(HOURLY, datetime(2026, 11, 23, 9, tzinfo=UTC))]
    assert scheduler.step() == []
    clock.now = datetime(2026, 11, 23, 13, 10, tzinfo=UTC)  # stopped for four ticks: the latest runs once
    assert scheduler.step() == [run_id(HOURLY, datetime(2026, 11, 23, 13, tzinfo=UTC))]
    ran = publisher.store.client.hget(publisher.store.keys.scheduler_ran, HOURLY.name)
    assert ran == "2026-11-23T13:00:00+00:00"
