"""System jobs, served by every worker: smoke tests, health checks, benchmarks, failure drills."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from offload.contracts._base import JobContract, Payload, RetryPolicy

#: Every worker consumes this queue besides its own domain queues.
SYSTEM_QUEUE = "system"


class NoopPayload(Payload):
    """Nothing to do; an optional string is echoed back as the result."""

    echo: str | None = Field(default=None, max_length=1000)


class NoopResult(BaseModel):
    """What ``system.noop`` returns."""

    echo: str | None = None


class SleepPayload(Payload):
    """Sleep ``ms`` milliseconds in small steps, reporting progress and honouring cancel requests."""

    ms: int = Field(ge=0, le=600_000, description="How long to sleep, in milliseconds.")
    steps: int = Field(default=10, ge=1, le=100, description="How many progress reports to make.")


class SleepResult(BaseModel):
    """What ``system.sleep`` returns."""

    slept_ms: int


class FailPayload(Payload):
    """Fail on purpose: a drill for retries, dead letters and alerting."""

    message: str = Field(default="Failing on purpose.", max_length=500)
    permanent: bool = Field(default=False, description="Fail without retrying.")
    succeed_on_attempt: int | None = Field(
        default=None, ge=1, le=20, description="Succeed from this attempt on (counting from 1)."
    )


class GatherPayload(Payload):
    """Nothing to configure: the node's children are its input."""


class GatherResult(BaseModel):
    """What ``system.gather`` returns: its flow children's results by node name."""

    children: dict[str, Any]


NOOP = JobContract(
    name="system.noop",
    queue=SYSTEM_QUEUE,
    payload=NoopPayload,
    result=NoopResult,
    description="Does nothing and returns at once; for smoke tests, health checks and benchmarks.",
    retry=RetryPolicy(max_retries=0),
    time_limit=10,
)

SLEEP = JobContract(
    name="system.sleep",
    queue=SYSTEM_QUEUE,
    payload=SleepPayload,
    result=SleepResult,
    description="Sleeps for the given milliseconds, reporting progress; cancellable.",
    retry=RetryPolicy(max_retries=0),
    time_limit=660,
)

FAIL = JobContract(
    name="system.fail",
    queue=SYSTEM_QUEUE,
    payload=FailPayload,
    description="Fails on purpose (transiently unless 'permanent'); for drills of retries and alerts.",
    retry=RetryPolicy(max_retries=2, min_backoff=0.5, max_backoff=5),
    time_limit=10,
)

GATHER = JobContract(
    name="system.gather",
    queue=SYSTEM_QUEUE,
    payload=GatherPayload,
    result=GatherResult,
    description="Returns its flow children's results by node name: a flow's fan-in step, a batch's completion.",
    retry=RetryPolicy(max_retries=2, min_backoff=0.5, max_backoff=5),
    time_limit=30,
)

CONTRACTS = (NOOP, SLEEP, FAIL, GATHER)
