"""The moves of a job's record: created, started, progressing, finished, cancelled, reopened."""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from offload.errors import StatusStoreUnavailable
from offload.status.facet import Facet
from offload.status.scripts import named, redis_errors
from offload.status.shapes import (
    _CONTROL,
    MAX_LOG_LINE,
    MAX_LOG_LINES,
    Created,
    Started,
)
from offload.status.states import JobState
from offload.wire import stored_message

logger = logging.getLogger(__name__)


class Lifecycle(Facet):
    """The moves of a job's record: created, started, progressing, finished, cancelled, reopened.

    Every method is a compare-and-set Lua script: a move that no longer applies (a stale attempt, a job
    already ended) changes nothing and says so.
    """

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
        idem = self.keys.idem(str(fields["tenant"]), idempotency_key) if idempotency_key else ""
        flat = [item for pair in fields.items() for item in pair]
        reply = named(
            self._run(
                "create", job_id, state, scheduled_for or "", idem, fingerprint, idempotency_ttl * 1000, "", *flat
            )
        )
        return Created(reply["outcome"], reply["job_id"])

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
        idem = self.keys.idem(tenant, idempotency_key) if idempotency_key else ""
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

    def start(self, job_id: str, *, max_unfinished: int) -> Started:
        """Open an attempt for a delivered message (see ``lua/start.lua`` for the outcomes).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        return _started(named(self._run("start", job_id, max_unfinished, self.retention.failed * 1000)))

    def start_many(self, job_ids: list[str], *, max_unfinished: int) -> list[Started | StatusStoreUnavailable]:
        """Open attempts for many delivered messages in one round trip (:meth:`start` for each, in order).

        A call the server refused comes back as :class:`StatusStoreUnavailable` in its place (the
        others still ran); what a worker's start combiner (``offload.worker.start_combiner``) sends
        for the jobs its threads begin at the same moment.

        Raises:
            StatusStoreUnavailable: Redis is unavailable (none of the calls may have run, or all).
        """
        args = (max_unfinished, self.retention.failed * 1000)
        replies = self.store.scripts.run_many("start", [(job_id, args) for job_id in job_ids])
        return [
            StatusStoreUnavailable("The job status store (Redis) refused the request.")
            if isinstance(reply, Exception)
            else _started(named(reply))
            for reply in replies
        ]

    def progress(self, job_id: str, attempt: int, percent: int, message: str = "") -> tuple[str, bool]:
        """Record progress of a running attempt; returns ``(state, cancel_requested)``.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        reply = named(self._run("progress", job_id, attempt, max(0, min(100, percent)), message))
        return reply["state"], reply["cancel_requested"] == "1"

    def log(self, job_id: str, attempt: int, line: str) -> bool:
        """Append ``line`` to the job's log; False if the attempt is not the running one.

        The log is kept with the record (:data:`MAX_LOG_LINES` at most, each cut to
        :data:`MAX_LOG_LINE` characters, control characters made spaces).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        line = _CONTROL.sub(" ", line)[:MAX_LOG_LINE]
        return bool(self._run("log", job_id, attempt, line, MAX_LOG_LINES))

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

    def finish_succeeded_many(self, ends: list[tuple[str, int, Any]]) -> list[bool | None]:
        """End many running attempts ``succeeded`` in one round trip: ``(job_id, attempt, result)`` each.

        The same compare-and-set as :meth:`finish` per job: True written, False stale (the job moved
        on), None if the server refused that one call (logged); what a worker's end writer
        (``offload.worker.end_writer``) writes for the short jobs of all its threads at once.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        ttl = self.retention.ttl_ms(JobState.SUCCEEDED)
        calls: list[tuple[str, tuple[str | int | float, ...]]] = [
            (
                job_id,
                (
                    attempt,
                    JobState.SUCCEEDED.value,
                    ttl,
                    json.dumps(result, separators=(",", ":")) if result is not None else "",
                    "",
                    "",
                    "",
                    "1",
                ),
            )
            for job_id, attempt, result in ends
        ]
        written: list[bool | None] = []
        for (job_id, _), reply in zip(calls, self.store.scripts.run_many("finish", calls), strict=True):
            if isinstance(reply, Exception):
                logger.error("Ending job %s failed in Redis: %s", job_id, reply)
                written.append(None)
            else:
                written.append(reply == 1)
        return written

    def deferrals(self, job_id: str) -> int:
        """How many times the job's attempts were held back without counting (see :meth:`finish`).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            return int(self.client.hget(self.keys.job(job_id), "deferrals") or 0)

    def fail_unstarted(self, job_id: str, error: tuple[str, str]) -> bool:
        """Fail a ``queued`` job whose message could not be published; False if it had moved on.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        return bool(self._run("fail_unstarted", job_id, error[0], error[1], self.retention.failed * 1000))

    def cancel(self, job_id: str, *, tenant: str | None) -> tuple[str, str | None]:
        """Cancel for ``tenant`` (None: any, for admins). Returns ``(outcome, final state)``.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        reply = named(self._run("cancel", job_id, tenant or "*", self.retention.failed * 1000))
        return reply["outcome"], reply.get("state")

    def delete(self, job_id: str, *, tenant: str | None) -> tuple[str, str]:
        """Delete an ended job's record, log and index entries (``tenant`` None: any, for admins).

        Returns ``("deleted", "")``, or ``("state", current state)`` for a job that has not
        ended (left alone), or ``("missing", "")``.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        reply = named(self._run("delete", job_id, tenant or "*"))
        return reply["outcome"], reply.get("state", "")

    def reopen(self, job_id: str, *, tenant: str | None) -> tuple[str, str]:
        """Move a failed, dead or cancelled job back to ``queued``.

        Returns ``("queued", message)``, or ``("state", current state)`` / ``("missing", "")``.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        reply = named(self._run("reopen", job_id, tenant or "*"))
        if reply["outcome"] == "queued":
            return "queued", stored_message(reply["message"]).decode()
        return reply["outcome"], reply.get("state", "")


def _started(reply: dict[str, Any]) -> Started:
    """A ``start.lua`` reply, read by name."""
    outcome = reply["outcome"]
    if outcome == "run":
        return Started(
            "run",
            attempt=int(reply["attempt"]),
            try_number=int(reply["try"]),
            cancel_requested=reply["cancel_requested"] == "1",
            max_retries=int(reply["max_retries"]),
            tenant=reply["tenant"],
            has_follow_ups=reply["has_follow_ups"] == "1",
            parent_id=reply["parent_id"] or None,
            has_callback=reply["has_callback"] == "1",
        )
    if outcome == "skip":
        return Started("skip", state=reply["state"])
    if outcome == "dead":
        return Started("dead", attempt=int(reply["attempt"]))
    return Started(outcome)
