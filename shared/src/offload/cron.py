"""Cron arithmetic for the scheduler, on periodiq's cron engine (time-zone and DST aware via pendulum).

periodiq parses the five fields and finds the next matching minute; this module adds what a
scheduler that can stop and restart needs: the ticks that fell due since a given time.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from typing import Any

import pendulum
import periodiq

#: How far back a restarted scheduler looks for a missed tick.
LOOKBACK = timedelta(days=7)


#: Each field's allowed values (periodiq checks none: ``61 * * * *`` parsed, and never matched).
_BOUNDS = {"minute": (0, 59), "hour": (0, 23), "dom": (1, 31), "month": (1, 12), "dow": (0, 7)}
#: The most days each month can have.
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def parse(spec: str) -> Any:
    """Periodiq's ``CronSpec`` for ``spec``.

    Raises:
        ValueError: the expression is not five valid cron fields (or a known ``@`` name), a value
            is out of its field's range, or it names a day no month it names has (``0 0 31 2 *``).
    """
    if not spec.startswith("@") and len(spec.split()) != 5:
        raise ValueError(f"{spec!r} is not a cron expression: it needs five fields.")
    try:
        parsed = periodiq.cron(spec)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"{spec!r} is not a cron expression: {exc}") from None
    for name, (low, high) in _BOUNDS.items():
        values = getattr(parsed, name)
        if not values or min(values) < low or max(values) > high:
            raise ValueError(f"{spec!r} is not a cron expression: its {name} field is outside {low}-{high}.")
    if parsed.is_dom_restricted and not parsed.is_dow_restricted:
        if min(parsed.dom) > max(_MONTH_DAYS[month - 1] for month in parsed.month):
            raise ValueError(f"{spec!r} never falls due: no month it names has that day.")
    return parsed


def next_run(spec: str, after: datetime, tz: str) -> datetime:
    """The first tick of ``spec`` strictly after ``after``, in time zone ``tz``."""
    moment = pendulum.instance(after).in_timezone(tz)
    found: datetime = parse(spec).next_valid_date(moment)
    return found


def due(spec: str, since: datetime, now: datetime, tz: str, *, keep: int = 1) -> tuple[list[datetime], int]:
    """The latest ``keep`` ticks of ``spec`` in ``(since, now]``, oldest first, and how many ticks that range holds.

    ``since`` further back than :data:`LOOKBACK` is taken as ``now - LOOKBACK``.
    """
    parsed = parse(spec)
    cursor = pendulum.instance(max(since, now - LOOKBACK)).in_timezone(tz)
    limit = pendulum.instance(now).in_timezone(tz)
    found: deque[datetime] = deque(maxlen=keep)
    total = 0
    while (cursor := parsed.next_valid_date(cursor)) <= limit:
        found.append(cursor)
        total += 1
    return list(found), total
