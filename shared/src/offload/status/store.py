"""The job status store: Redis hashes moved forward by Lua compare-and-set scripts.

Each job is one hash (``<prefix>:job:<id>``) plus a capped history list. Every change bumps the
job's ``seq`` and is published on ``<prefix>:events:<id>`` for live events. Per-tenant sorted
sets index jobs by state and type, so listing never scans the keyspace.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import redis

from offload.numbers import whole_number
from offload.status.records import JobRecord, history_of
from offload.status.scripts import ScriptRunner, now_ms, redis_errors
from offload.status.states import JobState
from offload.wire import MESSAGE_FIELDS, stored_message

logger = logging.getLogger(__name__)

#: Most log lines kept per job (the oldest are dropped), and most characters per line.
MAX_LOG_LINES = 200
MAX_LOG_LINE = 500
#: Control characters (but tab) in a log line become spaces: a line stays one line.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: The Redis layout this code writes (``lua/_prelude.lua``); :meth:`StatusStore.migrate_layout`
#: brings older ones to it.
LAYOUT = "2"
#: The most index entries one trim call removes (about 10 ms of Redis; a million take ~100 calls).
TRIM_STEP = 10_000
#: How long the reason of a dead letter without a record is kept: as long as RabbitMQ keeps dead
#: letters (Dramatiq's ``DEAD_MESSAGE_TTL``, 7 days).
DEAD_LETTER_TTL_MS = 7 * 86_400 * 1000
#: The longest message id kept as it is in a key; a longer one is hashed, and names no job.
_MAX_NAMED_ID = 100


@dataclass(frozen=True)
class Retention:
    """How long finished records are kept, in seconds."""

    succeeded: int = 86_400
    failed: int = 7 * 86_400

    def ttl_ms(self, state: JobState) -> int:
        """Milliseconds a record in ``state`` is kept (0: while active, kept until it ends)."""
        if state is JobState.SUCCEEDED:
            return self.succeeded * 1000
        return self.failed * 1000 if state.terminal else 0


@dataclass(frozen=True)
class Created:
    """Outcome of :meth:`StatusStore.create`: ``created``, ``exists`` (same id or key) or ``conflict``."""

    outcome: Literal["created", "exists", "conflict"]
    job_id: str


@dataclass(frozen=True)
class Started:
    """Outcome of :meth:`StatusStore.start`: what the worker should do with the message."""

    outcome: Literal["run", "skip", "missing", "aborted", "dead"]
    attempt: int = 0
    state: str | None = None
    cancel_requested: bool = False
    max_retries: int = 0
    tenant: str = ""
    has_follow_ups: bool = False
    parent_id: str | None = None
    #: The job has a callback URL: its ending will put it in the webhook outbox.
    has_callback: bool = False


@dataclass(frozen=True)
class Claim:
    """Jobs claimed by :meth:`StatusStore.claim_due`, and the lease score they were given."""

    lease: int
    jobs: list[tuple[str, bytes]]
    #: Ids that were due but had no record or stored message (taken off the schedule; never expected).
    lost: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Ending:
    """A finished job whose callback URL is to be called: its id, tenant, URL and terminal ``seq``."""

    job_id: str
    tenant: str
    url: str
    seq: int


@dataclass(frozen=True)
class DeadLetterReason:
    """Why Offload let a message die, as it recorded it (RabbitMQ only ever says ``rejected``).

    From the job record the message names (``recorded``): its error, as ``public()["error"]``
    gives it, its state now and its attempts. From a note (:meth:`StatusStore.note_dead_letter`)
    for a message no record could be written for: only a code and a message.
    """

    code: str | None
    message: str | None
    #: The field problems of a refusal, as a 422 lists them.
    errors: list[dict[str, Any]] = field(default_factory=list)
    recorded: bool = False
    state: str | None = None
    attempts: int = 0


@dataclass(frozen=True)
class Page:
    """One page of a listing; ``cursor`` fetches the next page, ``None`` at the end."""

    records: list[JobRecord]
    cursor: str | None


class StatusStore:
    """Reads and moves job records. Thread-safe (one connection pool), usable under gevent.

    Args:
        client: a Redis client with ``decode_responses=True``.
        prefix: the key prefix (``OFFLOAD_REDIS_PREFIX``).
        retention: how long finished records are kept.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "offload",
        retention: Retention | None = None,
        pin_connections: bool = False,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.retention = retention or Retention()
        #: Worker threads pin one connection each for the scripts (see :class:`ScriptRunner`).
        self.scripts = ScriptRunner(client, prefix=prefix, pin_connections=pin_connections)

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "offload", retention: Retention | None = None, pin_connections: bool = False
    ) -> StatusStore:
        """Connect with short timeouts, so that a dead Redis costs a request about a second, not minutes."""
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            health_check_interval=30,
            retry_on_timeout=False,
        )
        return cls(client, prefix=prefix, retention=retention, pin_connections=pin_connections)

    def key(self, *parts: str) -> str:
        """A key under this store's prefix."""
        return ":".join((self.prefix, *parts))

    def _run(self, name: str, job_id: str, *args: str | int | float) -> Any:
        return self.scripts.run(name, job_id, *args)

    def close(self) -> None:
        """Disconnect every connection this store opened."""
        self.scripts.close()

    # -- creation ----------------------------------------------------------------------------

    def create(
        self,
        job_id: str,
        fields: dict[str, str | int],
        *,
        scheduled_for: int | None = None,
        idempotency_key: str | None = None,
        fingerprint: str = "",
        idempotency_ttl: int = 86_400,
    ) -> Created:
        """Write a new record, ``queued`` (or ``scheduled`` when ``scheduled_for`` is set).

        ``fields`` must hold at least ``tenant``, ``type``, ``queue`` and ``created_at``. With an
        idempotency key, a second create with the same key returns the first job's id.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        state = "scheduled" if scheduled_for is not None else "queued"
        idem = self.key("idem", str(fields["tenant"]), idempotency_key) if idempotency_key else ""
        flat = [item for pair in fields.items() for item in pair]
        outcome, found = self._run(
            "create", job_id, state, scheduled_for or "", idem, fingerprint, idempotency_ttl * 1000, "", *flat
        )
        return Created(outcome, found)

    def abort(
        self, job_id: str, *, tenant: str, idempotency_key: str | None = None
    ) -> Literal["withdrawn", "taken", "missing"]:
        """Delete a record whose message was never confirmed, leaving a tombstone.

        Returns ``"withdrawn"`` if the record was removed (a late message will be dropped),
        ``"taken"`` if a worker already started the job (so the broker had its message after all:
        the publish succeeded without its confirm reaching us), ``"missing"`` if there is no record.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        idem = self.key("idem", tenant, idempotency_key) if idempotency_key else ""
        outcome = int(self._run("abort", job_id, self.retention.failed * 1000, idem))
        return "withdrawn" if outcome == 1 else "taken" if outcome == 0 else "missing"

    def refuse(
        self,
        job_id: str,
        fields: dict[str, str | int],
        error: tuple[str, str],
        *,
        errors: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Record a job that may not run: created and ended ``dead`` with ``error`` at once.

        For a job published on the wire that adoption refused (``offload.worker.adoption``);
        ``errors`` are the field problems, as a 422 would list them. False if it had a record.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        flat = [item for pair in fields.items() for item in pair]
        problems = json.dumps(errors, separators=(",", ":")) if errors else ""
        ttl = self.retention.failed * 1000
        return bool(self._run("refuse", job_id, error[0], error[1], problems, ttl, *flat))

    def presence(self, job_id: str) -> Literal["recorded", "withdrawn", "missing"]:
        """Whether ``job_id`` has a record, was withdrawn by its publisher, or is unknown.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.exists(self.key("job", job_id))
            pipe.exists(self.key("aborted", job_id))
            recorded, withdrawn = pipe.execute()
        return "recorded" if recorded else "withdrawn" if withdrawn else "missing"

    def stored_message(self, job_id: str) -> bytes | None:
        """The job's message, rebuilt from its record (to publish it again); None without a record.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            values = cast(list[str | None], self.client.hmget(self.key("job", job_id), MESSAGE_FIELDS[1:]))
        try:
            return stored_message([job_id, *values])
        except ValueError:
            return None

    def note_dead_letter(self, message_id: str, code: str, message: str) -> None:
        """Keep why a message with no record was dead-lettered, as long as its dead letter lives.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            self.client.set(
                self._dead_letter_key(message_id),
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
            found = self.client.mget([self._dead_letter_key(m) for m in message_ids])
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
        pipe.mget([self._dead_letter_key(m) for m in message_ids])
        for message_id in named:
            pipe.hmget(self.key("job", message_id), ["state", "attempts", *_ERROR_FIELDS])
        with redis_errors():
            notes, *records = pipe.execute()
        by_id = dict(zip(named, records, strict=True))
        return [_reason(by_id.get(m), note) for m, note in zip(message_ids, notes, strict=True)]

    def _dead_letter_key(self, message_id: str) -> str:
        # Any publisher picks message ids: a long one is stored under its hash.
        name = message_id if len(message_id) <= _MAX_NAMED_ID else hashlib.sha256(message_id.encode()).hexdigest()
        return self.key("dead-letter", name)

    # -- the worker's side -------------------------------------------------------------------

    def start(self, job_id: str, *, max_unfinished: int) -> Started:
        """Open an attempt for a delivered message (see ``lua/start.lua`` for the outcomes).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        reply = self._run("start", job_id, max_unfinished, self.retention.failed * 1000)
        outcome = reply[0]
        if outcome == "run":
            return Started(
                "run",
                attempt=int(reply[1]),
                cancel_requested=reply[2] == "1",
                max_retries=int(reply[3]),
                tenant=reply[4],
                has_follow_ups=reply[5] == "1",
                parent_id=reply[6] or None,
                has_callback=reply[7] == "1",
            )
        if outcome == "skip":
            return Started("skip", state=reply[1])
        if outcome == "dead":
            return Started("dead", attempt=int(reply[1]))
        return Started(outcome)

    def progress(self, job_id: str, attempt: int, percent: int, message: str = "") -> tuple[str, bool]:
        """Record progress of a running attempt; returns ``(state, cancel_requested)``.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        state, cancel = self._run("progress", job_id, attempt, max(0, min(100, percent)), message)
        return state, cancel == "1"

    def log(self, job_id: str, attempt: int, line: str) -> bool:
        """Append ``line`` to the job's log; False if the attempt is not the running one.

        The log is kept with the record (:data:`MAX_LOG_LINES` at most, each cut to
        :data:`MAX_LOG_LINE` characters, control characters made spaces).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        line = _CONTROL.sub(" ", line)[:MAX_LOG_LINE]
        return bool(self._run("log", job_id, attempt, line, MAX_LOG_LINES))

    def logs(self, job_id: str) -> list[dict[str, Any]]:
        """The job's log lines, oldest first: ``{"seq", "at", "attempt", "line"}`` each.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            entries = self.client.lrange(self.key("job", job_id, "logs"), 0, -1)
        return [json.loads(entry) for entry in entries]

    def finish(
        self,
        job_id: str,
        attempt: int,
        state: JobState,
        *,
        result: Any = None,
        error: tuple[str, str] | None = None,
        retry_at: int | None = None,
        counted: bool = True,
    ) -> bool:
        """End a running attempt in ``state``; False if the attempt was stale (the job moved on).

        ``counted=False`` (``retrying`` only): the attempt was held back before it tried, so it does
        not count; the next one has the same number, and the job's ``deferrals`` grow instead.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        code, message = error or ("", "")
        encoded = json.dumps(result, separators=(",", ":")) if result is not None else ""
        return bool(
            self._run(
                "finish",
                job_id,
                attempt,
                state.value,
                self.retention.ttl_ms(state),
                encoded,
                code,
                message,
                retry_at or "",
                "1" if counted else "0",
            )
        )

    def deferrals(self, job_id: str) -> int:
        """How many times the job's attempts were held back without counting (see :meth:`finish`).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            return int(self.client.hget(self.key("job", job_id), "deferrals") or 0)

    def fail_unstarted(self, job_id: str, error: tuple[str, str]) -> bool:
        """Fail a ``queued`` job whose message could not be published; False if it had moved on.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        return bool(self._run("fail_unstarted", job_id, error[0], error[1], self.retention.failed * 1000))

    def claim_due(self, *, limit: int = 100, lease_ms: int = 30_000) -> Claim:
        """Claim delayed or backed-off jobs that are due (delayed ones become ``queued``).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        lease, lost, *due = self._run("claim_due", "", limit, lease_ms)
        return Claim(int(lease), [(values[0], stored_message(values)) for values in due], list(lost))

    def promoted(self, job_id: str, lease: int) -> bool:
        """Release the lease of a claimed job whose message was published and confirmed.

        Only the claim's own entry is removed: if the job already ran and was scheduled again
        (a retry), that new entry stays.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        return bool(self._run("promoted", job_id, lease, "scheduled"))

    def claim_outbox(self, *, limit: int = 100, lease_ms: int = 30_000) -> tuple[int, list[Ending]]:
        """Claim finished jobs whose webhook is still to be queued; returns the lease and the jobs.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        lease, *flat = self._run("claim_outbox", "", limit, lease_ms)
        endings = [Ending(flat[i], flat[i + 1], flat[i + 2], int(flat[i + 3])) for i in range(0, len(flat), 4)]
        return int(lease), endings

    def outbox_done(self, job_id: str, lease: int) -> bool:
        """Release the outbox claim of a job whose webhook job was queued.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        return bool(self._run("promoted", job_id, lease, "outbox"))

    def release(self, job_id: str, lease: int, *, retry_in_ms: int = 1000) -> None:
        """Give back a claim whose publish failed, to be claimed again in ``retry_in_ms`` (not after the lease).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            if self.client.zscore(self.key("scheduled"), job_id) == lease:
                self.client.zadd(self.key("scheduled"), {job_id: now_ms() + retry_in_ms}, xx=True)

    def next_due(self) -> float | None:
        """Milliseconds timestamp of the earliest scheduled job, or None.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            first = self.client.zrange(self.key("scheduled"), 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    # -- the client's side -------------------------------------------------------------------

    def cancel(self, job_id: str, *, tenant: str | None) -> tuple[str, str | None]:
        """Cancel for ``tenant`` (None: any, for admins). Returns ``(outcome, final state)``.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        reply = self._run("cancel", job_id, tenant or "*", self.retention.failed * 1000)
        return reply[0], (reply[1] if len(reply) > 1 else None)

    def reopen(self, job_id: str, *, tenant: str | None) -> tuple[str, str]:
        """Move a failed, dead or cancelled job back to ``queued``.

        Returns ``("queued", message)``, or ``("state", current state)`` / ``("missing", "")``.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        reply = self._run("reopen", job_id, tenant or "*")
        if reply[0] == "queued":
            return "queued", stored_message(reply[1]).decode()
        return reply[0], (reply[1] if len(reply) > 1 else "")

    def get(self, job_id: str, *, tenant: str | None = None) -> JobRecord | None:
        """The record, or None if missing or (when ``tenant`` is given) owned by another tenant.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            raw = self.client.hgetall(self.key("job", job_id))
        if not raw or (tenant is not None and raw.get("tenant") != tenant):
            return None
        return JobRecord.from_hash({"id": job_id, **cast(dict[str, str], raw)})

    def follow_ups(self, job_id: str) -> list[dict[str, Any]]:
        """The follow-up specs stored with a job (``options.then``).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            raw = self.client.hget(self.key("job", job_id), "then")
        return json.loads(raw) if raw else []

    def history(self, job_id: str) -> list[dict[str, Any]]:
        """The job's state changes, oldest first (each as published on its events channel).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            raw = cast(dict[str, str], self.client.hgetall(self.key("job", job_id)))
            events = history_of(raw)
            if raw and not events:  # a record of layout 1, not migrated yet: its history is a list
                entries = cast(list[str], self.client.lrange(self.key("job", job_id, "history"), 0, -1))
                return [json.loads(entry) for entry in entries]
        return events

    def list_jobs(
        self,
        *,
        tenant: str | None,
        state: JobState | None = None,
        job_type: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """The jobs that changed state most recently first, filtered by state and type.

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
            indexes = self._indexes(tenant or "_all", job_type, state)
            entries = self._newest(indexes, max_score, after_id, limit + 1)
            page, more = entries[:limit], len(entries) > limit
            records = self._load(page, state)
        if not page:
            return Page([], None)
        score, last_id, _ = page[-1]
        return Page(records, _encode_cursor(int(score), last_id) if more else None)

    def _indexes(self, owner: str, job_type: str | None, state: JobState | None) -> list[str]:
        """The index keys a listing of ``owner`` (a tenant or ``_all``) merges."""
        types = [job_type] if job_type else sorted(cast(set[str], self.client.smembers(self.key("types", owner))))
        states = [state] if state else list(JobState)
        return [self.key("idx", owner, "t", name, "s", s.value) for name in types for s in states]

    def state_index_keys(self, state: JobState) -> list[str]:
        """The all-tenant index keys of ``state``, one per job type (for counts and scans by state).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            return self._indexes("_all", None, state)

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

    def _load(self, entries: list[tuple[float, str, str]], state: JobState | None) -> list[JobRecord]:
        """The records of ``entries``; entries whose record expired are dropped from their index."""
        pipe = self.client.pipeline(transaction=False)
        for _, member, _ in entries:
            pipe.hgetall(self.key("job", member))
        records: list[JobRecord] = []
        gone = self.client.pipeline(transaction=False)
        for (_, member, index), raw in zip(entries, pipe.execute(), strict=True):
            if not raw:
                gone.zrem(index, member)  # expired since the last trim
                continue
            if state and raw.get("state") != state.value:
                continue  # it moved on between the index read and now
            records.append(JobRecord.from_hash({"id": member, **raw}))
        if len(gone):
            gone.execute()
        return records

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
                pipe.hmget(self.key("job", job_id), "state", "started_at", "attempts", *MESSAGE_FIELDS[1:])
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
                claim = self.key("stalled", job_id, attempts or "0")
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
        """Drop the index entries of finished jobs whose records retention has expired.

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
            if not self.client.set(self.key("trim-lock"), "1", nx=True, px=lock_ms):
                return None
            tenants = sorted(cast(set[str], self.client.smembers(self.key("tenants"))))
        moment = now if now is not None else now_ms()
        cutoffs: list[str | int] = []
        for state in JobState:
            if state.terminal:
                cutoffs += [state.value, moment - self.retention.ttl_ms(state)]
        removed = 0
        for owner in ("_all", *tenants):
            more = 1
            while more:
                step, more = self._run("trim", owner, TRIM_STEP, *cutoffs)
                removed += int(step)
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
            if self.client.get(self.key("layout")) == LAYOUT:
                return None
            if not self.client.set(self.key("migrate-lock"), "1", nx=True, px=lock_ms):
                return None
            migrated = 0
            ids: list[str] = []
            for key in self.client.scan_iter(match=self.key("job", "*"), count=batch):
                job_id = key[len(self.key("job", "")) :]
                if ":" in job_id:
                    continue  # a record's history or logs list
                ids.append(job_id)
                if len(ids) >= batch:
                    migrated += self._migrate(ids)
                    ids = []
            migrated += self._migrate(ids)
            self._drop_layout1_indexes()
            self.client.set(self.key("layout"), LAYOUT)
            self.client.delete(self.key("migrate-lock"))
        logger.info("Status store migrated to layout %s: %d records.", LAYOUT, migrated)
        return migrated

    def _migrate(self, ids: list[str]) -> int:
        return sum(max(0, int(self._run("migrate", job_id))) for job_id in ids)

    def _drop_layout1_indexes(self) -> None:
        """Delete the indexes only layout 1 had, and drop entries without a record from the rest."""
        states = "|".join(state.value for state in JobState)
        layout2 = re.compile(rf"^{re.escape(self.key('idx'))}:[^:]+:t:.+:s:({states})$")
        for key in self.client.scan_iter(match=self.key("idx", "*"), count=500):
            if not layout2.match(key):
                self.client.delete(key)  # idx:<tenant>[:t:<type>|:s:<state>], idx:_all[:s:<state>]
                continue
            for members in _chunks(member for member, _ in self.client.zscan_iter(key, count=500)):
                pipe = self.client.pipeline(transaction=False)
                for member in members:
                    pipe.exists(self.key("job", member))
                gone = [member for member, exists in zip(members, pipe.execute(), strict=True) if not exists]
                if gone:
                    self.client.zrem(key, *gone)

    def ping(self) -> None:
        """Check that Redis answers.

        Raises:
            StatusStoreUnavailable: it does not.
        """
        with redis_errors():
            self.client.ping()

    def events_channel(self, job_id: str) -> str:
        """The pub/sub channel a job's changes are published on."""
        return self.key("events", job_id)


#: The fields of a job record that say why it failed.
_ERROR_FIELDS = ("error_code", "error_message", "error_fields")


def _reason(record: list[str | None] | None, note: str | None) -> DeadLetterReason | None:
    state, attempts, code, message, errors = record or [None] * 5
    if state:
        return DeadLetterReason(
            code=code or None,
            message=message or None,
            errors=json.loads(errors) if errors else [],
            recorded=True,
            state=state,
            attempts=int(attempts or 0),
        )
    if note:
        kept = json.loads(note)
        return DeadLetterReason(code=kept.get("code"), message=kept.get("message"))
    return None


def _encode_cursor(score: int, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{score}:{job_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[float | str, str | None]:
    """The score and job id a cursor of :func:`_encode_cursor` holds.

    The score is read as ASCII digits, as it was written: ``float()`` would also take ``nan``,
    ``inf`` or ``1e999``, which Redis refuses, and a crafted cursor then looked like an outage (503)
    instead of the bad request it is (issue 29, item 5).

    Raises:
        ValueError: the cursor is not one this store made.
    """
    if not cursor:
        return "+inf", None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raw = ""
    text, _, job_id = raw.partition(":")
    score = whole_number(text)
    if score is None or not job_id:
        raise ValueError("The cursor is not valid; use the one a previous page returned.")
    return score, job_id


def _chunks(items: Iterable[str], size: int = 500) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
