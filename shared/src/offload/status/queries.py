"""Reading job records: one by id, its logs, history and follow-ups, and pages of a listing."""

from __future__ import annotations

import json
import logging
from typing import Any, Literal, cast

from offload.status.facet import Facet
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
        """The jobs that changed state most recently first, filtered by state, type and tag.

        With ``tag``, the tag's index is read instead (:meth:`tag_index_keys`): its jobs newest
        first by when each could first run (creation, or a delayed job's due time), and the state
        and type filters apply to the records it names, so such a page is often short while
        ``cursor`` is set.

        Every combination is served by exact indexes, one per type and state (the tenant's, or
        all tenants'): one when both are given, else those of every state and of every type the
        tenant has used, merged. A page reads at most ``limit + 1`` entries of each and ``limit``
        records: its work follows the catalogue, never the number of jobs. A page may hold fewer
        than ``limit`` jobs (records that expired since the last trim are skipped) while
        ``cursor`` is set: follow it until it is None.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
            ValueError: the cursor is malformed.
        """
        max_score, after_id = _decode_cursor(cursor)
        with redis_errors():
            indexes = self.tag_index_keys(tenant, tag) if tag else self._indexes(tenant or "_all", job_type, state)
            entries = self._newest(indexes, max_score, after_id, limit + 1)
            page, more = entries[:limit], len(entries) > limit
            records = self._load(page, state, job_type if tag else None)
        if not page:
            return Page([], None)
        score, last_id, _ = page[-1]
        return Page(records, _encode_cursor(int(score), last_id) if more else None)

    def tag_index_keys(self, tenant: str | None, tag: str) -> list[str]:
        """The index keys of the jobs carrying ``tag``: the tenant's one, or every tenant's (None).

        Each is a sorted set of job ids scored by when the job could first run (milliseconds);
        entries outlive their records by up to a trim's interval (``Janitor.trim_indexes``), so a
        reader loads each record and skips the missing. This is the tag index's whole API: list
        through :meth:`list_jobs` (``tag=``), or read these keys' members for a bulk pass.

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
        self, indexes: list[str], max_score: float | str, after_id: str | None, count: int
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
                pipe.zrevrangebyscore(index, max_score, "-inf", start=0, num=count + slack, withscores=True)
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

    def _load(
        self, entries: list[tuple[float, str, str]], state: JobState | None, job_type: str | None = None
    ) -> list[JobRecord]:
        """The records of ``entries`` (in ``state``, of ``job_type``); entries of expired records leave their index."""
        pipe = self.client.pipeline(transaction=False)
        for _, member, _ in entries:
            pipe.hgetall(self.keys.job(member))
        records: list[JobRecord] = []
        gone = self.client.pipeline(transaction=False)
        for (_, member, index), raw in zip(entries, pipe.execute(), strict=True):
            if not raw:
                gone.zrem(index, member)  # expired since the last trim
                continue
            if state and raw.get("state") != state.value:
                continue  # it moved on between the index read and now
            if job_type and raw.get("type") != job_type:
                continue
            records.append(JobRecord.from_hash({"id": member, **raw}))
        if len(gone):
            gone.execute()
        return records
