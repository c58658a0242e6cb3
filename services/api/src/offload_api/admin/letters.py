"""The dead-letters page: each letter with the reason Offload recorded, a page at a time, grouped by reason.

RabbitMQ says ``rejected`` of whatever a worker refused, for any cause; the cause is in Redis.
A letter whose message id names a job record gets that record's error (a refusal's field
problems, the last error of exhausted retries, ``unknown_type``, ``wrong_queue``...); one no
record could be written for gets the note the worker kept (``invalid_job_id``...); a body that is
not a Dramatiq message at all is ``malformed``, shown as its escaped first bytes. Reasons are read
in one pipelined round trip for every letter read, and counted by code, as Sidekiq's and Flower's
users expect to see identical failures together.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from offload import dead_letters
from offload.dead_letters import Letter
from offload.numbers import whole_number
from offload.status import DeadLetterReason, StatusStore

#: Letters on one page.
PAGE_SIZE = 50
#: The oldest letters the reason counts cover (a queue deeper than this is counted in part).
SUMMARY_SCAN = 2_000
#: Bytes of a malformed letter shown.
RAW_SHOWN = 300
#: The reason of a body that is not a Dramatiq message.
MALFORMED = "malformed"


@dataclass(frozen=True)
class Reason:
    """Why a letter is dead, in words for the page: a code to group by, a message, field problems."""

    code: str
    message: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Row:
    """One letter on the page."""

    #: Its place in the queue, oldest first, from 1.
    position: int
    letter: Letter
    reason: Reason
    #: The job whose record names the letter (its page exists), else None.
    job_id: str | None

    @property
    def raw(self) -> str:
        r"""The start of the body, non-printable bytes escaped as ``\xNN`` (HTML escaping is Jinja's)."""
        return repr(self.letter.body[:RAW_SHOWN])[2:-1]

    @property
    def truncated(self) -> bool:
        """True if :attr:`raw` shows only the start of the body."""
        return len(self.letter.body) > RAW_SHOWN


@dataclass(frozen=True)
class Group:
    """A reason code, how many letters have it and one of their messages."""

    code: str
    count: int
    example: str


@dataclass(frozen=True)
class DeadLetterPage:
    """One page of a queue's dead letters, with the reasons of the oldest :data:`SUMMARY_SCAN` counted."""

    rows: list[Row]
    groups: list[Group]
    #: Letters in the queue, and how many of them the groups count.
    depth: int
    counted: int
    number: int
    pages: int


def page_number(raw: str | None) -> int:
    """The page a ``page`` parameter asks for: a whole number from 1, else 1."""
    number = whole_number(raw, max_digits=6)
    return number if number else 1


def load(broker_url: str, store: StatusStore, queue: str, number: int) -> DeadLetterPage:
    """Page ``number`` of ``queue``'s dead letters (left in place), and its reasons counted.

    Raises:
        pika.exceptions.AMQPError: the broker could not be reached.
        StatusStoreUnavailable: Redis is unavailable.
    """
    reachable = dead_letters.MAX_PER_QUEUE // PAGE_SIZE
    number = min(number, reachable)
    start = (number - 1) * PAGE_SIZE
    peeked = dead_letters.peek(broker_url, queue, limit=max(SUMMARY_SCAN, start + PAGE_SIZE))
    rows = _rows(store, peeked.letters)
    pages = max(1, min(reachable, math.ceil(peeked.depth / PAGE_SIZE)))
    number = min(number, pages)  # past the end (the queue shrank): its last page, already read
    start = (number - 1) * PAGE_SIZE
    return DeadLetterPage(
        rows=rows[start : start + PAGE_SIZE],
        groups=group(rows),
        depth=peeked.depth,
        counted=len(rows),
        number=number,
        pages=pages,
    )


def _rows(store: StatusStore, read: list[Letter]) -> list[Row]:
    """``read`` (oldest first) as rows, each with its reason."""
    return [
        Row(position=i + 1, letter=letter, reason=reason, job_id=job_id)
        for i, (letter, (reason, job_id)) in enumerate(zip(read, explain(store, read), strict=True))
    ]


@dataclass(frozen=True)
class LetterFilter:
    """Which dead letters a requeue takes: each criterion given must hold (none given: every letter)."""

    #: The job type the message names (its actor).
    job_type: str | None = None
    #: The reason code shown for it (``permanent_error``, ``validation_failed``, ``unknown_type``...).
    reason: str | None = None
    #: Dead-lettered at or after this moment, and before that one.
    dead_from: datetime | None = None
    dead_to: datetime | None = None

    def matches(self, row: Row) -> bool:
        """Whether ``row`` meets every criterion given (a letter of unknown death time meets no time range)."""
        message, died = row.letter.message, row.letter.dead_lettered_at
        if self.job_type is not None and (message is None or message.actor_name != self.job_type):
            return False
        if self.reason is not None and row.reason.code != self.reason:
            return False
        if self.dead_from is not None and (died is None or died < self.dead_from):
            return False
        return not (self.dead_to is not None and (died is None or died >= self.dead_to))


@dataclass(frozen=True)
class Requeued:
    """What a requeue did: the letters the filter matched, those requeued, the malformed ones left."""

    matched: int
    requeued: int
    malformed: int


def requeue(
    broker_url: str, store: StatusStore, queue: str, where: LetterFilter, handle: Callable[[bytes], None]
) -> Requeued:
    """Requeue the dead letters of ``queue`` that ``where`` matches (among the oldest :data:`MAX_PER_QUEUE`).

    They are read and their reasons looked up first (one Redis round trip), then taken off by
    message id, each handed to ``handle`` and acked after it. A malformed letter is never requeued
    (nothing could run it); it is counted and left to be purged.

    Raises:
        pika.exceptions.AMQPError: the broker could not be reached.
        StatusStoreUnavailable: Redis is unavailable.
    """
    peeked = dead_letters.peek(broker_url, queue, limit=dead_letters.MAX_PER_QUEUE)
    matched = [row for row in _rows(store, peeked.letters) if where.matches(row)]
    named = {row.letter.message.message_id for row in matched if row.letter.message is not None}
    taken = dead_letters.take_named(broker_url, queue, named, handle) if named else 0
    return Requeued(matched=len(matched), requeued=taken, malformed=sum(row.letter.message is None for row in matched))


def explain(store: StatusStore, letters: list[Letter]) -> list[tuple[Reason, str | None]]:
    """Each letter's reason, and the job whose record names it (None if none), in one Redis round trip.

    Raises:
        StatusStoreUnavailable: Redis is unavailable.
    """
    ids = [letter.message.message_id for letter in letters if letter.message is not None]
    recorded = iter(store.janitor.dead_letter_reasons(ids))
    explained: list[tuple[Reason, str | None]] = []
    for letter in letters:
        if letter.message is None:
            explained.append((_malformed(letter.body), None))
            continue
        found = next(recorded)
        job_id = letter.message.message_id if found is not None and found.recorded else None
        explained.append((_reason(found, letter.broker_reason), job_id))
    return explained


def group(rows: list[Row]) -> list[Group]:
    """The rows' reason codes with their counts, the most frequent first, each with its first message."""
    counts = Counter(row.reason.code for row in rows)
    examples: dict[str, str] = {}
    for row in rows:
        examples.setdefault(row.reason.code, row.reason.message)
    return [Group(code, count, examples[code]) for code, count in sorted(counts.items(), key=lambda c: (-c[1], c[0]))]


def _malformed(body: bytes) -> Reason:
    try:
        json.loads(body)
        what = "JSON, but not a Dramatiq message"
    except ValueError:
        what = "not JSON"
    return Reason(MALFORMED, f"{len(body)} bytes, {what}: it cannot be requeued, only purged.")


def _reason(found: DeadLetterReason | None, broker_reason: str | None) -> Reason:
    if found is None:
        said = f" (RabbitMQ: {broker_reason})" if broker_reason else ""
        return Reason("unrecorded", f"Offload has no record of this message (expired, or never recorded){said}.")
    if found.code is None:
        return Reason("retried", f"Its job was retried since it died, and is {found.state} now.")
    message = found.message or ""
    if found.attempts:  # retries ran out: the message is the last attempt's error
        message += f" (the last of {found.attempts} attempts)" if found.attempts > 1 else " (after 1 attempt)"
    if found.recorded and found.state not in ("failed", "dead"):
        message += f" Its job is {found.state} now."
    fields = tuple(f"{problem.get('field')}: {problem.get('problem')}" for problem in found.errors)
    return Reason(found.code, message, fields)
