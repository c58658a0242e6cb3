"""Keeping the store healthy: stalled jobs, index trimming, layout migration, dead-letter notes."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import cast

from offload.status.facet import Facet
from offload.status.feeds import FEED_MAX_AGE
from offload.status.scripts import named, now_ms, redis_errors
from offload.status.shapes import (
    _ERROR_FIELDS,
    _MAX_NAMED_ID,
    DEAD_LETTER_TTL_MS,
    LAYOUT,
    TRIM_STEP,
    DeadLetterReason,
    _chunks,
    _reason,
)
from offload.status.states import JobState
from offload.wire import MESSAGE_FIELDS, stored_message

logger = logging.getLogger(__name__)


class Janitor(Facet):
    """Keeping the store healthy: stalled jobs, index trimming, layout migration, dead-letter notes.

    These run from the promoter and maintenance jobs, never on a request's path.
    """

    def claim_stalled(self, overdue_ms: Callable[[str], int], *, limit: int = 1000) -> list[tuple[str, str, str]]:
        """Claim running jobs whose current attempt started longer ago than it could still run.

        ``overdue_ms(job_type)`` is how long an attempt of that type can last at most (its time
        limit plus the hard-limit grace plus a margin). A record still ``running`` past that lost
        its ending: the worker wrote it and Redis lost it (a crash within the append-only file's
        last second), or the message was dropped while the record said running. Each stalled
        attempt is claimed once across all processes (``SET NX`` on the job and its attempt);
        returns ``(job_id, message, claim)`` for each claimed, for the caller to deliver again (and to
        give back with :meth:`release_stalled` if it cannot).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        now = now_ms()
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            for index in self._indexes("_all", None, JobState.RUNNING):
                pipe.zrange(index, 0, limit - 1, withscores=True)  # the longest running first
            oldest = sorted((score, member) for batch in pipe.execute() for member, score in batch)[:limit]
            ids = [member for _, member in oldest]
            if not ids:
                return []
            pipe = self.client.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(self.keys.job(job_id), "state", "started_at", "attempts", *MESSAGE_FIELDS[1:])
            stalled = []
            for job_id, values in zip(ids, pipe.execute(), strict=True):
                state, started_at, attempts, job_type = values[0], values[1], values[2], values[3]
                if state != JobState.RUNNING.value or not (job_type and started_at):
                    continue
                if now - int(started_at) <= overdue_ms(job_type):
                    continue
                try:
                    message = stored_message([job_id, *values[3:]]).decode()
                except ValueError:  # every record can make its message; this one cannot be redelivered
                    logger.error("Job %s is stalled and has no stored message: it cannot be delivered again.", job_id)
                    continue
                claim = self.keys.stalled(job_id, attempts or "0")
                if self.client.set(claim, "1", nx=True, px=24 * 3600 * 1000):
                    stalled.append((job_id, message, claim))
        return stalled

    def release_stalled(self, claim: str) -> None:
        """Give back a stalled job's claim (it could not be delivered again; the next look retries).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            self.client.delete(claim)

    def trim_indexes(self, *, lock_ms: int = 30_000, now: int | None = None) -> int | None:
        """Drop the index entries (state and tag indexes) of finished jobs whose records retention has expired.

        Each tenant's change feed loses the changes older than :data:`~offload.status.feeds.FEED_MAX_AGE` too.

        A finished job is listed scored by the time it ended and kept a fixed retention after
        that (:class:`Retention`), so each index of a finished state loses its expired entries,
        its lowest-ranked, by rank (``lua/trim.lua``): the work follows how many tenants and types
        there are and how many entries expired, never how many jobs are kept. Each call removes
        at most :data:`TRIM_STEP` entries, so a mass expiry never holds Redis for long. One process at a time trims (a
        Redis lock held ``lock_ms``); returns how many entries it removed, or None when another
        process holds the lock.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            if not self.client.set(self.keys.trim_lock, "1", nx=True, px=lock_ms):
                return None
            tenants = sorted(cast(set[str], self.client.smembers(self.keys.tenants)))
        moment = now if now is not None else now_ms()
        longest = max(self.retention.ttl_ms(state) for state in JobState if state.terminal)
        cutoffs: list[str | int] = [moment - longest]  # the error indexes' (lua/trim.lua)
        for state in JobState:
            if state.terminal:
                cutoffs += [state.value, moment - self.retention.ttl_ms(state)]
        removed = 0
        for owner in ("_all", *tenants):
            removed += self._trim_steps("trim", owner, *cutoffs)
        # A tag index (``lua/trim_tags.lua``) lists jobs of every state: an entry older than the
        # shortest retention may have expired, and is dropped once its record is gone.
        shortest = min(self.retention.ttl_ms(state) for state in JobState if state.terminal)
        for tenant in tenants:
            removed += self._trim_steps("trim_tags", tenant, moment - shortest)
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            for tenant in tenants:  # each feed is a window of recent changes (offload.status.feeds)
                pipe.xtrim(self.keys.feed(tenant), minid=moment - FEED_MAX_AGE * 1000, approximate=False)
            pipe.execute()
        return removed

    def _trim_steps(self, script: str, owner: str, *args: str | int) -> int:
        """Run a trim script on ``owner``'s keys, :data:`TRIM_STEP` entries a call, until it is done."""
        removed, more = 0, 1
        while more:
            reply = named(self._run(script, owner, TRIM_STEP, *args))
            removed, more = removed + int(reply["removed"]), int(reply["more"])
        return removed

    def migrate_layout(self, *, batch: int = 500, lock_ms: int = 600_000) -> int | None:
        """Bring records and indexes written by Offload before layout 2 to it, once.

        Layout 1 listed each job in five indexes scored by its creation time, three of which
        never expired (``idx:<tenant>``, ``idx:<tenant>:t:<type>``, ``idx:_all``), and kept its
        history in a list beside it. This rewrites each record's history into its hash and lists
        it in the four indexes of layout 2 (scored by its last change), deletes the layout-1-only
        indexes, drops every index entry whose record is gone, then marks the layout done
        (``<prefix>:layout``). Jobs stay listable throughout: the state indexes both layouts
        share are updated in place. Safe to run again and from several processes (one runs, under
        a lock). Returns how many records it migrated, or None if it had nothing to do or
        another process is migrating.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            if self.client.get(self.keys.layout) == LAYOUT:
                return None
            if not self.client.set(self.keys.migrate_lock, "1", nx=True, px=lock_ms):
                return None
            migrated = 0
            ids: list[str] = []
            for key in self.client.scan_iter(match=self.keys.job("*"), count=batch):
                job_id = key[len(self.keys.job("")) :]
                if ":" in job_id:
                    continue  # a record's history or logs list
                ids.append(job_id)
                if len(ids) >= batch:
                    migrated += self._migrate(ids)
                    ids = []
            migrated += self._migrate(ids)
            self._drop_layout1_indexes()
            self.client.set(self.keys.layout, LAYOUT)
            self.client.delete(self.keys.migrate_lock)
        logger.info("Status store migrated to layout %s: %d records.", LAYOUT, migrated)
        return migrated

    def note_dead_letter(self, message_id: str, code: str, message: str) -> None:
        """Keep why a message with no record was dead-lettered, as long as its dead letter lives.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            self.client.set(
                self.keys.dead_letter(message_id),
                json.dumps({"code": code, "message": message}),
                px=DEAD_LETTER_TTL_MS,
            )

    def dead_letter_notes(self, message_ids: list[str]) -> list[dict[str, str] | None]:
        """What :meth:`note_dead_letter` kept for each of ``message_ids`` (None where nothing).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        if not message_ids:
            return []
        with redis_errors():
            found = self.client.mget([self.keys.dead_letter(m) for m in message_ids])
        return [json.loads(value) if value else None for value in found]

    def dead_letter_reasons(self, message_ids: list[str]) -> list[DeadLetterReason | None]:
        """Why each of ``message_ids`` was dead-lettered, in one pipelined round trip for them all.

        The job record an id names comes first (its code is None if the job has no error now,
        having been retried since); else the note kept beside the dead letter; else None.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        if not message_ids:
            return []
        # A job id is a UUID: a longer message id (any publisher picks them) names no record.
        named = [m for m in message_ids if len(m) <= _MAX_NAMED_ID]
        pipe = self.client.pipeline(transaction=False)
        pipe.mget([self.keys.dead_letter(m) for m in message_ids])
        for message_id in named:
            pipe.hmget(self.keys.job(message_id), ["state", "attempts", *_ERROR_FIELDS])
        with redis_errors():
            notes, *records = pipe.execute()
        by_id = dict(zip(named, records, strict=True))
        return [_reason(by_id.get(m), note) for m, note in zip(message_ids, notes, strict=True)]

    def _migrate(self, ids: list[str]) -> int:
        return sum(max(0, int(self._run("migrate", job_id))) for job_id in ids)

    def _drop_layout1_indexes(self) -> None:
        """Delete the indexes only layout 1 had, and drop entries without a record from the rest."""
        layout2 = self.keys.layout2_index
        for key in self.client.scan_iter(match=self.keys.any_index, count=500):
            if not layout2.match(key):
                self.client.delete(key)  # idx:<tenant>[:t:<type>|:s:<state>], idx:_all[:s:<state>]
                continue
            for members in _chunks(member for member, _ in self.client.zscan_iter(key, count=500)):
                pipe = self.client.pipeline(transaction=False)
                for member in members:
                    pipe.exists(self.keys.job(member))
                gone = [member for member, exists in zip(members, pipe.execute(), strict=True) if not exists]
                if gone:
                    self.client.zrem(key, *gone)
