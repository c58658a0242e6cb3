"""A worker with two job types made to overstay their time limits, for scenario F11.

``dramatiq tests.chaos.stuck_worker:setup --queues system``: the system jobs, plus
``system.busy`` (a pure-Python loop that never ends; the soft time limit interrupts it) and
``system.blocked`` (a sleep in C that outlasts its limit; only the hard limit can end it).
"""

from __future__ import annotations

import time

from offload.contracts import JobContract, Registry, RetryPolicy, system
from offload.jobs import WorkerSpec, job
from offload.worker import JobContext


class Stuck(system.NoopPayload):
    """No input."""


BUSY = JobContract(
    name="system.busy",
    queue="system",
    payload=Stuck,
    description="Spins in Python forever.",
    time_limit=2,
    retry=RetryPolicy(max_retries=0),
)
BLOCKED = JobContract(
    name="system.blocked",
    queue="system",
    payload=Stuck,
    description="Blocks in C for a minute.",
    time_limit=1,
    retry=RetryPolicy(max_retries=0),
)
REGISTRY = Registry([*system.CONTRACTS, BUSY, BLOCKED])


@job(BUSY)
def spin(ctx: JobContext, payload: Stuck) -> None:
    """Never return, in Python bytecode (interruptible)."""
    while True:
        pass


@job(BLOCKED)
def block(ctx: JobContext, payload: Stuck) -> None:
    """Return after a minute spent in one C call (not interruptible)."""
    time.sleep(60)


#: The worker: the system job types and these two.
SPEC = WorkerSpec(name="stuck", jobs=(spin, block))
setup = SPEC.setup
