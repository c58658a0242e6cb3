"""A worker with a job that keeps the memory it allocates (a leak), for the memory guard's test.

``dramatiq tests.system.hog_worker:setup --queues system``: the system jobs plus ``system.hog``.
"""

from __future__ import annotations

from pydantic import Field

from offload.contracts import JobContract, Registry, RetryPolicy, system
from offload.jobs import WorkerSpec, job
from offload.worker import JobContext

#: What the hog jobs of this process allocated and never gave back.
LEAKED: list[bytearray] = []


class Hog(system.NoopPayload):
    """How many MiB to allocate and keep."""

    mb: int = Field(ge=1, le=2048)


HOG = JobContract(
    name="system.hog",
    queue="system",
    payload=Hog,
    description="Allocates memory and keeps it.",
    time_limit=30,
    retry=RetryPolicy(max_retries=0),
)
REGISTRY = Registry([*system.CONTRACTS, HOG])


@job(HOG)
def hog(ctx: JobContext, payload: Hog) -> dict[str, int]:
    """Allocate ``mb`` MiB, touch every page, and keep it."""
    LEAKED.append(bytearray(b"x" * (payload.mb * 1024 * 1024)))
    return {"kept_mb": sum(len(block) for block in LEAKED) // (1024 * 1024)}


#: The worker: the system job types and ``system.hog``.
SPEC = WorkerSpec(name="hog", jobs=(hog,))
setup = SPEC.setup
