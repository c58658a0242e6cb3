"""A worker with two job types made to overstay their time limits, for scenario F11.

``dramatiq tests.chaos.stuck_worker:setup --queues system``: the system jobs, plus
``system.busy`` (a pure-Python loop that never ends; the soft time limit interrupts it) and
``system.blocked`` (a sleep in C that outlasts its limit; only the hard limit can end it).
"""

from __future__ import annotations

import time

from dramatiq.brokers.rabbitmq import RabbitmqBroker

from offload.contracts import JobContract, Registry, RetryPolicy, system
from offload.publish import Publisher
from offload.settings import Settings, load_settings
from offload.worker import JobContext, build_worker


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


def spin(ctx: JobContext, payload: Stuck) -> None:
    """Never return, in Python bytecode (interruptible)."""
    while True:
        pass


def block(ctx: JobContext, payload: Stuck) -> None:
    """Return after a minute spent in one C call (not interruptible)."""
    time.sleep(60)


def setup() -> RabbitmqBroker:
    """Dramatiq calls this in each worker process."""
    settings = load_settings(Settings)
    publisher = Publisher.from_settings(settings, registry=REGISTRY, pin_connections=True)
    return build_worker(
        settings,
        queues=["system"],
        handlers={"system.busy": spin, "system.blocked": block},
        registry=REGISTRY,
        publisher=publisher,
    )
