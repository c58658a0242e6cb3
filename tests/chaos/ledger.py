"""The ledger of what clients were told, and the checker that compares it with what happened (§6.0).

Vocabulary (Jepsen's total-queue, as reliability-security.md §1.2 uses it):

- **lost**: answered 202 and never reached a terminal state by the end of the drain;
- **recovered**: the client saw a timeout or a reset (indeterminate), yet the job ran;
- **duplicated**: ran more than once (attempts > 1); it must be *marked* (its history shows the
  later attempt);
- **double effect**: a deduplicated side effect performed twice (counted by the sinks);
- **unexpected**: a job ran that no client was ever given.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

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
    for job_id in sorted(accepted):
        state, attempts = client.hmget(f"{prefix}:job:{job_id}", "state", "attempts")
        state = state.decode() if isinstance(state, bytes) else state
        states[state or "missing"] = states.get(state or "missing", 0) + 1
        if state not in TERMINAL:
            lost.append(job_id)
            continue
        if int(attempts or 0) > 1:
            duplicated += 1
            history = [json.loads(raw) for raw in client.lrange(f"{prefix}:job:{job_id}:history", 0, -1)]
            if not any(event.get("kind") == "state" and event.get("attempt", 0) >= 2 for event in history):
                unmarked.append(job_id)
    issued = accepted | {e.job_id for e in ledger.entries if e.job_id}
    known = {
        key.decode().split(":")[2]
        for key in client.scan_iter(f"{prefix}:job:*", count=1000)
        if key.decode().count(":") == 2
    }
    ran_for_tenant = {
        job_id for job_id in known if (client.hget(f"{prefix}:job:{job_id}", "tenant") or b"").decode() == tenant
    }
    unexpected = sorted(ran_for_tenant - issued)
    return Verdict(len(accepted), lost, duplicated, unmarked, unexpected, states)


#: Where each scenario's row goes; ``make chaos`` prints them as one table.
RESULTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "chaos"


def report(scenario: str, row: dict[str, Any]) -> None:
    """Keep ``scenario``'s numbers for the run's table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{scenario}.json").write_text(json.dumps({"scenario": scenario, **row}) + "\n")
