"""What the status store's facets answer with, and the limits and helpers they share."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from offload.numbers import whole_number
from offload.status.records import JobRecord
from offload.status.states import JobState

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
    #: Which try of the job's retry policy this attempt is: ``attempt`` less the reruns of attempts a
    #: worker was cut off in (a redelivery is not a retry, so it uses up none of ``max_retries``).
    try_number: int = 0
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
    """A finished job whose callback URL is to be called: its id, tenant, URL and terminal ``seq``.

    ``traceparent``/``tracestate``: the job's trace context ("" without one), which its delivery continues.
    """

    job_id: str
    tenant: str
    url: str
    seq: int
    traceparent: str = ""
    tracestate: str = ""


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
