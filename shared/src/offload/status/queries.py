"""Reading job records: one by id, its logs, history and follow-ups, and pages of a listing."""

from __future__ import annotations

import json
import logging
from typing import Any, Literal, cast

from offload.status.facet import Facet
from offload.status.filters import JobFilter
from offload.status.records import JobRecord, history_of
from offload.status.scripts import redis_errors
from offload.status.shapes import (
    Page,
    _decode_cursor,
    _encode_cursor,
)
from offload.status.states import JobState
from offload.wire import MESSAGE_FIELDS, stored_message

logger = logging.getLogger(__name__)

#: The most index entries one page of a listing reads (a rare error code is found in part per page).
SCAN_LIMIT = 5_000
#: The page size :meth:`Queries.matching_ids` reads with.
MATCH_PAGE = 500


class Queries(Facet):
    """Reading job records: one by id, its logs, history and follow-ups, and pages of a listing.

    Nothing here writes; a listing walks the indexes by score, never the keyspace.
    """

    def get(self, job_id: str, *, tenant: str | None = None) -> JobRecord | None:
        """The record, or None if missing or (when ``tenant`` is given) owned by another tenant.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            raw = self.client.hgetall(self.keys.job(job_id))
        if not raw or (tenant is not None and raw.get("tenant") != tenant):
            return None
        return JobRecord.from_hash({"id": job_id, **cast(dict[str, str], raw)})

    def presence(self, job_id: str) -> Literal["recorded", "withdrawn", "missing"]:
        """Whether ``job_id`` has a record, was withdrawn by its publisher, or is unknown.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.exists(self.keys.job(job_id))
            pipe.exists(self.keys.aborted(job_id))
            recorded, withdrawn = pipe.execute()
        return "recorded" if recorded else "withdrawn" if withdrawn else "missing"

    def stored_message(self, job_id: str) -> bytes | None:
        """The job's message, rebuilt from its record (to publish it again); None without a record.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            values = cast(list[str | None], self.client.hmget(self.keys.job(job_id), MESSAGE_FIELDS[1:]))
        try:
            return stored_message([job_id, *values])
        except ValueError:
            return None

    def logs(self, job_id: str) -> list[dict[str, Any]]:
        """The job's log lines, oldest first: ``{"seq", "at", "attempt", "line"}`` each.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            entries = self.client.lrange(self.keys.logs(job_id), 0, -1)
        return [json.loads(entry) for entry in entries]

    def follow_ups(self, job_id: str) -> list[dict[str, Any]]:
        """The follow-up specs stored with a job (``options.then``).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            raw = self.client.hget(self.keys.job(job_id), "then")
        return json.loads(raw) if raw else []

    def history(self, job_id: str) -> list[dict[str, Any]]:
        """The job's state changes, oldest first (each as published on its events channel).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            raw = cast(dict[str, str], self.client.hgetall(self.keys.job(job_id)))
            events = history_of(raw)
            if raw and not events:  # a record of layout 1, not migrated yet: its history is a list
                entries = cast(list[str], self.client.lrange(self.keys.history(job_id), 0, -1))
                return [json.loads(entry) for entry in entries]
        return events

    def list_jobs(
        self,
        *,
        tenant: str | None,
        state: JobState | None = None,
        job_type: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """:meth:`search` by tenant, state, type and tag only.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
            ValueError: the cursor is malformed.
        """
        return self.search(
            JobFilter(tenant=tenant, state=state, job_type=job_type, tag=tag), limit=limit, cursor=cursor
        )

    def search(self, where: JobFilter, *, limit: int = 50, cursor: str | None = None) -> Page:
        """The jobs ``where`` matches that changed state most recently first (an ended job: when it ended).

        The tenant, type and state choose exact indexes, one per type and state (the tenant's, or
        all tenants'), merged, or an error code its error index; an ended-between range reads only
        that range of their scores; the other criteria are checked on each record read. A page
        reads at most :data:`SCAN_LIMIT` index entries, so a page of a filter the indexes do not
        decide (a created-between range) may hold fewer than ``limit`` jobs, or none, while
        ``cursor`` is set: follow it until it is None.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
            ValueError: the cursor is malformed.
        """
        max_score, after_id = _decode_cursor(cursor)
        min_score, high = where.scores
        if cursor is None:
            max_score = high
        records: list[JobRecord] = []
        last: tuple[float, str] | None = None
        more, scanned = True, 0
        with redis_errors():
            owner = where.tenant or "_all"
            if where.error_code is not None:
                indexes = [self.keys.error_index(owner, where.error_code)]
            elif where.tag is not None:
                indexes = self.tag_index_keys(where.tenant, where.tag)
            else:
                indexes = [index for state in where.states for index in self._indexes(owner, where.job_type, state)]
            while more and len(records) < limit and scanned < SCAN_LIMIT:
                entries = self._newest(indexes, max_score, after_id, limit + 1, min_score)
                more = len(entries) > limit
                batch = entries[:limit]
                for (score, member, _), record in zip(batch, self._load(batch), strict=True):
                    last = (score, member)
                    if record is not None and where.matches(record):
                        records.append(record)
                        if len(records) == limit:
                            more = more or member != batch[-1][1]
                            break
                scanned += len(batch)
                if last is not None:
                    max_score, after_id = int(last[0]), last[1]
        if last is None or not more:
            return Page(records, None)
        return Page(records, _encode_cursor(int(last[0]), last[1]))

    def matching_ids(self, where: JobFilter, *, limit: int) -> list[str]:
        """The ids of up to ``limit`` jobs ``where`` matches, newest change first (a bulk operation's jobs).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        ids: list[str] = []
        cursor: str | None = None
        while len(ids) < limit:
            page = self.search(where, limit=min(MATCH_PAGE, limit - len(ids)), cursor=cursor)
            ids += [record.id for record in page.records]
            cursor = page.cursor
            if cursor is None:
                break
        return ids

    def tag_index_keys(self, tenant: str | None, tag: str) -> list[str]:
        """The index keys of the jobs carrying ``tag``: the tenant's one, or every tenant's (None).

        Each is a sorted set of job ids scored by when the job could first run (milliseconds);
        entries outlive their records by up to a trim's interval (``Janitor.trim_indexes``), so a
        reader loads each record and skips the missing. This is the tag index's whole API: list
        through :meth:`search` (a :class:`JobFilter` with ``tag``), as listings and bulk operations do.

        Raises:
            redis.RedisError: Redis is unavailable (callers wrap in :func:`redis_errors`).
        """
        if tenant is not None:
            return [self.keys.tag(tenant, tag)]
        return [self.keys.tag(owner, tag) for owner in sorted(cast(set[str], self.client.smembers(self.keys.tenants)))]

    def state_index_keys(self, state: JobState) -> list[str]:
        """The all-tenant index keys of ``state``, one per job type (for counts and scans by state).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            return self._indexes("_all", None, state)

    def events_channel(self, job_id: str) -> str:
        """The pub/sub channel a job's changes are published on."""
        return self.keys.events(job_id)

    def subscribe(self, job_id: str) -> Any:
        """A pub/sub subscription to the job's changes, as its events channel carries them; close it after.

        Raises:
            redis.RedisError: Redis is unavailable.
        """
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.subscribe(self.events_channel(job_id))
        return pubsub

    def cancel_requested(self, job_id: str) -> bool:
        """Whether a cancel of the job was requested (its worker polls this while it runs).

        Raises:
            redis.RedisError: Redis is unavailable.
        """
        return self.client.hget(self.keys.job(job_id), "cancel_requested") == "1"

    def result(self, job_id: str) -> Any:
        """The job's result as stored (JSON), or None if it has none (yet) or is unknown.

        Raises:
            redis.RedisError: Redis is unavailable.
        """
        raw = self.client.hget(self.keys.job(job_id), "result")
        return json.loads(raw) if raw else None

    def _newest(
        self, indexes: list[str], max_score: float | str, after_id: str | None, count: int, min_score: int | str
    ) -> list[tuple[float, str, str]]:
        """The ``count`` newest entries below the cursor across ``indexes``, as (score, id, index).

        Entries of the cursor's own millisecond are ordered by id, so no entry is read twice or
        skipped; ``slack`` more are read per index for them, and an index whose reading they used
        up is read again with more.
        """
        slack = 20
        found: list[tuple[float, str, str]] = []
        pending = list(indexes)
        while pending:
            pipe = self.client.pipeline(transaction=False)
            for index in pending:
                pipe.zrevrangebyscore(index, max_score, min_score, start=0, num=count + slack, withscores=True)
            again = []
            for index, batch in zip(pending, pipe.execute(), strict=True):
                kept = [
                    (score, member, index)
                    for member, score in batch
                    if not (after_id is not None and score == max_score and member >= after_id)
                ]
                if len(batch) == count + slack and len(kept) < count:
                    again.append(index)  # the cursor's millisecond held more than the slack
                else:
                    found.extend(kept)
            pending, slack = again, slack * 10
        found.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
        return found[:count]

    def _load(self, entries: list[tuple[float, str, str]]) -> list[JobRecord | None]:
        """The record of each of ``entries`` (None where it expired; its entry is dropped from its index)."""
        pipe = self.client.pipeline(transaction=False)
        for _, member, _ in entries:
            pipe.hgetall(self.keys.job(member))
        records: list[JobRecord | None] = []
        gone = self.client.pipeline(transaction=False)
        for (_, member, index), raw in zip(entries, pipe.execute(), strict=True):
            if not raw:
                gone.zrem(index, member)  # expired since the last trim
                records.append(None)
                continue
            records.append(JobRecord.from_hash({"id": member, **raw}))
        if len(gone):
            gone.execute()
        return records
