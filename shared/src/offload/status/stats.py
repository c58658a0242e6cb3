"""Hourly job statistics: computed from the status store by ``stats.aggregate``, read by ``GET /v1/stats``.

An hour's statistics count the jobs that *entered their state* in that hour (a finished job: that
*ended* in it), grouped by type, tenant and state, with the 50th, 95th and 99th percentile of
their run time (start of the last attempt to its end) and of their wait (enqueue, or the retry's
due time, to that start). The job indexes are scored by that moment, so an hour is one range of
each. Each hour is a Redis
hash ``stats:<hour>`` kept for 90 days; recomputing an hour overwrites it, so a late run or a
rerun never double counts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from redis.typing import EncodableT, FieldT

from offload.status.states import JobState
from offload.status.store import StatusStore

HOUR = timedelta(hours=1)
#: Hourly statistics are kept this long.
RETENTION = timedelta(days=90)
_FIELDS = ("type", "tenant", "created_at", "scheduled_for", "started_at", "finished_at")
_FAILED = (JobState.FAILED.value, JobState.DEAD.value)
_BATCH = 500


def state_counts(store: StatusStore) -> dict[str, int]:
    """Jobs in each state now (finished ones until their retention ends), from the all-tenant indexes."""
    totals = dict.fromkeys((state.value for state in JobState), 0)
    for by_state in type_state_counts(store).values():
        for state, count in by_state.items():
            totals[state] += count
    return totals


def type_state_counts(store: StatusStore) -> dict[str, dict[str, int]]:
    """Each job type's jobs in each state now, from the all-tenant indexes (one pipelined round trip)."""
    types = sorted(cast(set[str], store.client.smembers(store.keys.types("_all"))))
    pipe = store.client.pipeline(transaction=False)
    for job_type in types:
        for state in JobState:
            pipe.zcard(store.keys.index("_all", job_type, state))
    counts = iter(pipe.execute())
    return {job_type: {state.value: int(next(counts)) for state in JobState} for job_type in types}


def hour_of(moment: datetime) -> datetime:
    """The start of the UTC hour ``moment`` falls in."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def percentiles(values: list[int]) -> dict[str, int] | None:
    """p50, p95 and p99 of ``values`` (nearest rank), or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(p: float) -> int:
        return ordered[min(len(ordered) - 1, max(0, int(p * len(ordered) + 0.999999) - 1))]

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99)}


@dataclass
class _Group:
    count: int = 0
    durations: list[int] = field(default_factory=list)
    waits: list[int] = field(default_factory=list)


def aggregate(store: StatusStore, hour: datetime) -> tuple[int, int]:
    """Compute and store the statistics of the hour starting at ``hour``; returns (jobs, groups)."""
    start_ms = int(hour.timestamp() * 1000)
    end_ms = start_ms + 3_600_000
    client = store.client
    groups: dict[tuple[str, str, str], _Group] = defaultdict(_Group)
    jobs = 0
    for state in JobState:
        ids = [
            member
            for index in store.queries.state_index_keys(state)
            for member in cast(list[str], client.zrangebyscore(index, start_ms, f"({end_ms}"))
        ]
        for offset in range(0, len(ids), _BATCH):
            pipe = client.pipeline(transaction=False)
            for job_id in ids[offset : offset + _BATCH]:
                pipe.hmget(store.keys.job(job_id), *_FIELDS)
            for values in pipe.execute():
                job_type, tenant, created, scheduled, started, finished = values
                if not job_type:
                    continue  # expired between the index read and now
                jobs += 1
                group = groups[(job_type, tenant or "default", state.value)]
                group.count += 1
                if started:
                    waited = int(started) - int(scheduled or created or started)
                    group.waits.append(max(0, waited))
                    if finished:
                        group.durations.append(max(0, int(finished) - int(started)))
    key = store.keys.stats(hour.astimezone(UTC).isoformat())
    mapping: dict[FieldT, EncodableT] = {
        "\t".join(name): json.dumps(
            {"count": g.count, "duration_ms": percentiles(g.durations), "wait_ms": percentiles(g.waits)}
        )
        for name, g in groups.items()
    }
    pipe = client.pipeline(transaction=True)
    pipe.delete(key)
    if mapping:
        pipe.hset(key, mapping=mapping)
        pipe.expire(key, RETENTION)
    pipe.zadd(store.keys.stats_hours, {hour.astimezone(UTC).isoformat(): hour.timestamp()})
    pipe.zremrangebyscore(store.keys.stats_hours, "-inf", (hour - RETENTION).timestamp())
    pipe.execute()
    return jobs, len(groups)


def read(
    store: StatusStore, start: datetime, end: datetime, *, tenant: str | None, job_type: str | None
) -> dict[str, Any]:
    """The stored hours in ``[start, end)``, filtered, with totals and failure rates per type and tenant.

    ``tenant`` None means every tenant (admins).
    """
    hours = cast(
        list[str], store.client.zrangebyscore(store.keys.stats_hours, start.timestamp(), f"({end.timestamp()}")
    )
    pipe = store.client.pipeline(transaction=False)
    for hour in hours:
        pipe.hgetall(store.keys.stats(hour))
    rows: list[dict[str, Any]] = []
    totals: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for hour, fields in zip(hours, pipe.execute(), strict=True):
        groups = []
        for name, raw in sorted(fields.items()):
            group_type, group_tenant, state = name.split("\t")
            if (tenant is not None and group_tenant != tenant) or (job_type is not None and group_type != job_type):
                continue
            values = json.loads(raw)
            groups.append({"type": group_type, "tenant": group_tenant, "state": state, **values})
            totals[(group_type, group_tenant)][state] += values["count"]
        rows.append({"hour": hour, "groups": groups})
    summary = []
    for (group_type, group_tenant), counts in sorted(totals.items()):
        failed = sum(counts.get(s, 0) for s in _FAILED)
        ended = counts.get("succeeded", 0) + failed
        summary.append(
            {
                "type": group_type,
                "tenant": group_tenant,
                "counts": dict(counts),
                "failure_rate": round(failed / ended, 4) if ended else None,
            }
        )
    return {"from": start.isoformat(), "to": end.isoformat(), "hours": rows, "totals": summary}
