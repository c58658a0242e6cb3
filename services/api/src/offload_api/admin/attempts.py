"""Failed admin sign-ins: limited per client address and per key prefix, with a growing delay, and logged.

The sign-in form checks an admin key as the API checks a bearer key, and it had no limit: 120
wrong keys in 0.2 s were all answered, and the right one still signed in after them (issue 29,
item 1). Now every failed sign-in

* counts toward the API's bad-key limit of its address (``offload_api.auth``: past
  :data:`~offload_api.auth.MAX_BAD_KEYS_PER_MINUTE` a minute, 429 until the minute ends), the same
  counter, so the form is no way around it;
* after :data:`FREE_FAILURES` in a row from one address, or with one key prefix (the first
  :data:`PREFIX` characters, from any address), makes the next try of that address or prefix wait,
  1 s at first and twice as long after each further failure, up to :data:`MAX_DELAY`;
* is logged with its address and the counts (never the key, nor its prefix).

While a wait lasts, a sign-in is answered 429 with ``Retry-After`` before its key is looked at, so
even the right key cannot tell a guesser anything. A successful sign-in clears its address's run.
The state lives in Redis, so every API process shares it.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass

from offload.status.guards import SignInRuns
from offload_api.auth import count_bad_key
from offload_api.extension import services

logger = logging.getLogger(__name__)

#: Failed sign-ins in a row (from one address, or with one key prefix) answered without a wait.
FREE_FAILURES = 3
#: The longest wait, in seconds, however many failures came before.
MAX_DELAY = 300
#: Seconds a run of failures is remembered after its last failure.
RUN_SECONDS = 900
#: How many leading characters of a tried key make its prefix.
PREFIX = 8


@dataclass(frozen=True)
class Attempt:
    """One sign-in: the client's address and the key tried."""

    address: str
    key: str

    def subjects(self) -> tuple[tuple[str, str], ...]:
        """What failures are counted against: the address, and the key's prefix (hashed: no key text in Redis)."""
        prefix = hashlib.sha256(self.key[:PREFIX].encode()).hexdigest()[:32]
        return (("address", self.address), ("prefix", prefix))


def delay_after(failures: int) -> int:
    """Seconds to wait after ``failures`` failed sign-ins in a row: none for the first few, then 1, 2, 4, ..."""
    if failures <= FREE_FAILURES:
        return 0
    return min(MAX_DELAY, int(2 ** min(failures - FREE_FAILURES - 1, 16)))


def wait(attempt: Attempt) -> int:
    """Seconds before ``attempt`` may be checked (0: now).

    Raises:
        StatusStoreUnavailable: Redis is unavailable.
    """
    waits_ms = SignInRuns(services().store).waits_ms(attempt.subjects())
    longest = max([math.ceil(ms / 1000) for ms in waits_ms if ms > 0] or [0])
    return max(longest, count_bad_key(attempt.address, count=False))


def failed(attempt: Attempt) -> int:
    """Count a failed sign-in against its address and key prefix (and the API's bad-key count); log it.

    Returns:
        The seconds the address or prefix must now wait.

    Raises:
        StatusStoreUnavailable: Redis is unavailable.
    """
    kept = SignInRuns(services().store)
    counted = count_bad_key(attempt.address)
    runs = {}
    for kind, subject in attempt.subjects():
        runs[kind] = kept.fail(kind, subject, remember_s=RUN_SECONDS)
        delay = delay_after(runs[kind])
        if delay:
            kept.make_wait(kind, subject, delay)
    delay = max(delay_after(runs["address"]), delay_after(runs["prefix"]), counted)
    logger.warning(
        "Failed admin sign-in from %s: %d in a row from this address, %d with this key's prefix; "
        "the next try from it waits %d s.",
        attempt.address,
        runs["address"],
        runs["prefix"],
        delay,
    )
    return delay


def refused(attempt: Attempt, seconds: int) -> None:
    """Log a sign-in refused unchecked because its address or key prefix must still wait."""
    logger.warning("Admin sign-in from %s refused unchecked: %d s of its wait are left.", attempt.address, seconds)


def succeeded(attempt: Attempt) -> None:
    """Clear the run of failures of ``attempt``'s address.

    Raises:
        StatusStoreUnavailable: Redis is unavailable.
    """
    SignInRuns(services().store).clear("address", attempt.address)
