"""The ledger of what clients were told, and the checker that compares it with what happened (§6.0).

Vocabulary (Jepsen's total-queue, as reliability-security.md §1.2 uses it):

- **lost**: answered 202 and never reached a terminal state by the end of the drain;
- **recovered**: the client saw a timeout or a reset (indeterminate), yet the job ran;
- **duplicated**: started again without a failed attempt to explain it (a redelivery after a crash
  or a lost ack; a retry after a failure is policy, not a duplicate); it must be *marked* (its
  history shows the later attempt);
- **double effect**: a deduplicated side effect performed twice (counted by the sinks);
- **unexpected**: a job ran that no client was ever given.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from offload.status import JobState
from offload.status.records import history_of
from offload.status.states import TRANSITIONS

TERMINAL = {"succeeded", "failed", "dead", "cancelled"}


@dataclass
class Entry:
    """One submission: what the client sent and what it was told."""

    key: str
    status: int | None  # None: timeout or reset (indeterminate)
    job_id: str | None


@dataclass
class Ledger:
    """Every submission of a run, appended from any thread."""

    entries: list[Entry] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, key: str, status: int | None, job_id: str | None) -> None:
        """Append one submission's outcome."""
        with self.lock:
            self.entries.append(Entry(key, status, job_id))

    @property
    def accepted(self) -> list[str]:
        """Job ids answered 202 (or 200 for a replayed idempotency key)."""
        return [e.job_id for e in self.entries if e.status in (200, 202) and e.job_id]


@dataclass(frozen=True)
class Verdict:
    """The checker's counts for one run."""

    jobs: int
    lost: list[str]
    duplicated: int
    unmarked_duplicates: list[str]
    unexpected: list[str]
    terminal: dict[str, int]
    #: Jobs whose history has a step the state machine forbids (filled by :func:`went_backwards`).
    backwards: list[str] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        """The numbers a report table shows."""
        return {
            "jobs": self.jobs,
            "lost": len(self.lost),
            "duplicated (marked)": self.duplicated - len(self.unmarked_duplicates),
            "unmarked": len(self.unmarked_duplicates),
            "unexpected": len(self.unexpected),
        }


def check(ledger: Ledger, client: redis.Redis, *, tenant: str, prefix: str = "offload") -> Verdict:
    """Compare the ledger with the status store's records of ``tenant``."""
    accepted = set(ledger.accepted)
    states: dict[str, int] = {}
    lost, unmarked = [], []
    duplicated = 0
    ordered = sorted(accepted)
    pipe = client.pipeline(transaction=False)  # one round trip for all: a run holds thousands of jobs
    for job_id in ordered:
        pipe.hmget(f"{prefix}:job:{job_id}", "state", "attempts")
    for job_id, (state, attempts) in zip(ordered, pipe.execute(), strict=True):
        state = state.decode() if isinstance(state, bytes) else state
        states[state or "missing"] = states.get(state or "missing", 0) + 1
        if state not in TERMINAL:
            lost.append(job_id)
            continue
        if int(attempts or 0) > 1:
            history = job_history(client, job_id, prefix=prefix)
            path = [event.get("state") for event in history if event.get("kind") == "state"]
            # A retry after a failed attempt is the job's policy, not a duplicate: only a start
            # that no failure explains (a redelivery after a crash or a lost ack) is one.
            if path.count("running") > 1 + path.count("retrying"):
                duplicated += 1
                if not any(event.get("kind") == "state" and event.get("attempt", 0) >= 2 for event in history):
                    unmarked.append(job_id)
    issued = accepted | {e.job_id for e in ledger.entries if e.job_id}
    known = sorted(
        {
            key.decode().split(":")[2]
            for key in client.scan_iter(f"{prefix}:job:*", count=1000)
            if key.decode().count(":") == 2
        }
    )
    pipe = client.pipeline(transaction=False)
    for job_id in known:
        pipe.hget(f"{prefix}:job:{job_id}", "tenant")
    ran_for_tenant = {
        job_id for job_id, owner in zip(known, pipe.execute(), strict=True) if (owner or b"").decode() == tenant
    }
    unexpected = sorted(ran_for_tenant - issued)
    return Verdict(len(accepted), lost, duplicated, unmarked, unexpected, states)


def unfinished(ledger: Ledger, client: redis.Redis, *, prefix: str = "offload") -> int:
    """How many accepted jobs are not terminal yet (one pipelined read: cheap enough to poll)."""
    pipe = client.pipeline(transaction=False)
    for job_id in ledger.accepted:
        pipe.hget(f"{prefix}:job:{job_id}", "state")
    return sum(1 for state in pipe.execute() if (state.decode() if isinstance(state, bytes) else state) not in TERMINAL)


def job_history(client: redis.Redis, job_id: str, *, prefix: str = "offload") -> list[dict[str, Any]]:
    """A job's state changes, oldest first, read from its record (``offload.status.records.history_of``)."""
    return history_of(_decoded(client.hgetall(f"{prefix}:job:{job_id}")))


def _decoded(raw: Any) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()
    }


def went_backwards(ledger: Ledger, client: redis.Redis, *, prefix: str = "offload") -> list[str]:
    """Accepted jobs whose history has a transition ``offload.status.TRANSITIONS`` does not allow
    (a state that moved backwards, or skipped ahead): status must only move forward (§6.0)."""
    ids = ledger.accepted
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(f"{prefix}:job:{job_id}")
    wrong = []
    for job_id, raw in zip(ids, pipe.execute(), strict=True):
        path = history_of(_decoded(raw))
        states = [JobState(e["state"]) for e in path if e.get("kind") == "state"]
        steps = list(zip([None, *states], states, strict=False))
        if len(path) < 200 and any(new not in TRANSITIONS[old] for old, new in steps):  # 200: trimmed history
            wrong.append(job_id)
    return wrong


def finished(ledger: Ledger, client: redis.Redis, *, prefix: str = "offload") -> int:
    """How many of the ledger's accepted jobs are in a terminal state now."""
    ids = ledger.accepted
    return len(ids) - len(_unfinished(ids, client, prefix))


def _unfinished(ids: list[str], client: redis.Redis, prefix: str) -> list[str]:
    """Those of ``ids`` whose job is not in a terminal state now (one pipelined round trip)."""
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(f"{prefix}:job:{job_id}", "state")
    return [j for j, state in zip(ids, pipe.execute(), strict=True) if not (state and state.decode() in TERMINAL)]


def wait_all_finished(ledger: Ledger, client: redis.Redis, *, timeout: float, prefix: str = "offload") -> None:
    """Return once every accepted job of ``ledger`` is in a terminal state (TimeoutError after ``timeout``).

    Asks only about the jobs not yet seen finished, so a throughput measurement polling every
    50 ms does not spend the cores it measures on thousands of lookups of jobs long done.
    """
    pending = list(ledger.accepted)
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(pending)} of {len(ledger.accepted)} jobs did not finish in {timeout} s")
        pending = _unfinished(pending, client, prefix)
        if pending:
            time.sleep(0.05)


def succeeded_twice(ledger: Ledger, client: redis.Redis, *, prefix: str = "offload") -> list[str]:
    """Accepted jobs whose history shows more than one "succeeded": an effect done twice."""
    twice = []
    for job_id in ledger.accepted:
        events = job_history(client, job_id, prefix=prefix)
        if sum(1 for e in events if e.get("kind") == "state" and e.get("state") == "succeeded") > 1:
            twice.append(job_id)
    return twice


def seconds_until_progress(count: Callable[[], int], *, total: int, timeout: float = 60.0) -> float:
    """Seconds from now until ``count()`` grows (or reaches ``total``, when nothing was left to do):
    how long the system took to work again after a fault cleared (the scenarios' "recovery s").
    Raises ``TimeoutError`` if it never grows."""
    start = time.monotonic()
    before = count()
    while time.monotonic() - start < timeout:
        done = count()
        if done > before or done >= total:
            return time.monotonic() - start
        time.sleep(0.1)
    raise TimeoutError(f"no progress within {timeout} s of the fault clearing")


#: Where each scenario's row goes; ``make chaos`` prints them as one table.
RESULTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "chaos"


def report(
    scenario: str,
    verdict: Verdict | None,
    *,
    double_effects: int,
    recovery_s: float | None,
    **extra: Any,
) -> None:
    """Keep ``scenario``'s numbers for the run's table.

    Every row has the same columns (jobs, lost, duplicated (marked), unmarked, unexpected, double
    effects, recovery s) so ``make chaos`` can print one table; ``extra`` adds the scenario's own
    (faults caused, 503s answered, ...). ``verdict`` is None for scenarios whose jobs are not
    client submissions (a poison message published straight to the broker, say); their ``extra``
    must then say what was checked.
    """
    row: dict[str, Any] = verdict.row() if verdict else {}
    row["double effects"] = double_effects
    row["recovery s"] = "-" if recovery_s is None else round(recovery_s, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{scenario}.json").write_text(json.dumps({"scenario": scenario, **row, **extra}) + "\n")
