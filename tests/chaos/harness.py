"""What every fault scenario does around its fault: submit through the real API into the ledger
(in a burst, or steadily while the fault happens), wait for the drain, then check and report.

The scenarios differ only in the fault they cause and their own pass criteria; this module keeps
the rest identical, so that one table compares them (reliability-security.md §6.0).
"""

from __future__ import annotations

import http.client
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import redis

from tests.chaos.ledger import Ledger, Verdict, check, unfinished, went_backwards
from tests.helpers import wait_for
from tests.system.stack import Api

#: ``make chaos`` sets 10 for the full volume; the default suite runs each scenario at 1.
SCALE = int(os.environ.get("OFFLOAD_CHAOS_SCALE", "1"))
#: The tenant whose key every scenario submits with.
TENANT = "acme"
#: A job that takes a while (two progress steps), so that faults catch some running.
SLOW = {"type": "system.sleep", "payload": {"ms": 100, "steps": 2}}
#: A job that is over at once.
FAST = {"type": "system.noop", "payload": {}}


@dataclass(frozen=True)
class Answer:
    """One submission as the client saw it: when, how long it took, and what came back."""

    at: float
    seconds: float
    status: int | None  # None: the client gave up (timeout or reset): indeterminate
    error: str | None
    retry_after: str | None


@dataclass
class Submitter:
    """Submits jobs through ``api``, appending each outcome to ``ledger`` and to ``answers``."""

    api: Api
    ledger: Ledger
    timeout: float = 5.0
    answers: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, body: dict[str, Any], key: str | None = None) -> Answer:
        """Submit one job with idempotency key ``key`` (a fresh one if None)."""
        key = key or f"chaos-{uuid.uuid4().hex}"
        started = time.monotonic()
        try:
            status, headers, answer = self.api.request(
                "POST", "/v1/jobs", body, headers={"Idempotency-Key": key}, timeout=self.timeout
            )
        except (OSError, http.client.HTTPException):
            self.ledger.record(key, None, None)
            result = Answer(started, time.monotonic() - started, None, None, None)
        else:
            answer = answer if isinstance(answer, dict) else {}
            self.ledger.record(key, status, answer.get("id"))
            result = Answer(
                started, time.monotonic() - started, status, answer.get("error"), headers.get("Retry-After")
            )
        with self.lock:
            self.answers.append(result)
        return result

    def burst(self, count: int, body: dict[str, Any], *, threads: int = 8) -> list[Answer]:
        """Submit ``count`` jobs as fast as ``threads`` clients can."""
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(lambda _: self.submit(body), range(count)))

    @contextmanager
    def steady(self, rate: float, body: dict[str, Any], *, threads: int = 4) -> Iterator[list[Answer]]:
        """Submit about ``rate`` jobs a second in the background while the block runs.

        Yields the list the answers of this load are appended to (for the scenario to judge the
        ones given during its fault).
        """
        stop = threading.Event()
        mine: list[Answer] = []
        interval = threads / rate

        def client() -> None:
            next_at = time.monotonic()
            while not stop.is_set():
                mine.append(self.submit(body))
                next_at += interval
                stop.wait(max(0.0, next_at - time.monotonic()))

        workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
        for worker in workers:
            worker.start()
        try:
            yield mine
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=self.timeout + 5)


def drain(ledger: Ledger, client: redis.Redis, *, timeout: float) -> Verdict:
    """Wait until every accepted job is terminal (or ``timeout`` passes), then check the ledger."""
    try:
        wait_for(lambda: unfinished(ledger, client) == 0, timeout=timeout, interval=0.5)
    except AssertionError:
        pass  # the verdict names what is lost; the scenario's assertions report it
    return replace(check(ledger, client, tenant=TENANT), backwards=went_backwards(ledger, client))


def assert_common(verdict: Verdict) -> None:
    """The criteria every scenario shares: 0 lost, 0 unexpected, every duplicate marked, and every
    job's status only moved forward."""
    assert verdict.lost == [], f"{len(verdict.lost)} lost (states {verdict.terminal}), e.g. {verdict.lost[:3]}"
    assert verdict.unexpected == [], f"unexpected: {verdict.unexpected[:5]}"
    assert verdict.unmarked_duplicates == [], f"unmarked: {verdict.unmarked_duplicates[:5]}"
    assert verdict.backwards == [], f"status went backwards: {verdict.backwards[:5]}"


def within(answers: list[Answer], start: float, end: float) -> list[Answer]:
    """The answers to submissions made between ``start`` and ``end`` (monotonic seconds)."""
    return [a for a in answers if start <= a.at <= end]


def first_accepted_after(answers: list[Answer], moment: float) -> float | None:
    """Seconds from ``moment`` to the first 202 given to a submission made after it."""
    accepted = [a.at + a.seconds for a in answers if a.at >= moment and a.status == 202]
    return min(accepted) - moment if accepted else None
