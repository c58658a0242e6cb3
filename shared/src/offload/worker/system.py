"""The system job types every worker serves (``system.noop``, ``system.sleep``, ``system.fail``, ``system.gather``)."""

from __future__ import annotations

import time
from typing import Any

from offload.contracts.system import (
    FAIL,
    GATHER,
    NOOP,
    SLEEP,
    FailPayload,
    GatherPayload,
    GatherResult,
    NoopPayload,
    NoopResult,
    SleepPayload,
    SleepResult,
)
from offload.errors import PermanentJobError, TransientJobError
from offload.jobs import JobType, job
from offload.worker.context import JobContext


@job(NOOP)
def noop(_ctx: JobContext, payload: NoopPayload) -> NoopResult:
    """Return at once, echoing the payload's string if any."""
    return NoopResult(echo=payload.echo)


@job(SLEEP)
def sleep(ctx: JobContext, payload: SleepPayload) -> SleepResult:
    """Sleep in ``steps`` slices, reporting progress after each and stopping if cancelled."""
    step = payload.ms / 1000 / payload.steps
    started = time.monotonic()
    for done in range(1, payload.steps + 1):
        deadline = started + step * done
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))
            ctx.raise_if_cancelled()
        ctx.progress(100 * done / payload.steps, f"slept {done}/{payload.steps}")
    ctx.log(f"slept {payload.ms} ms in {payload.steps} steps")
    return SleepResult(slept_ms=payload.ms)


@job(FAIL)
def fail(ctx: JobContext, payload: FailPayload) -> None:
    """Fail as asked: permanently, or transiently until ``succeed_on_attempt``.

    Raises:
        PermanentJobError: when ``permanent``.
        TransientJobError: otherwise, until the given attempt.
    """
    if payload.succeed_on_attempt is not None and ctx.attempt >= payload.succeed_on_attempt:
        return
    if payload.permanent:
        raise PermanentJobError(payload.message)
    raise TransientJobError(payload.message)


@job(GATHER)
def gather(ctx: JobContext, _payload: GatherPayload) -> GatherResult:
    """Return the flow children's results (``ctx.child_results``) as this node's own."""
    return GatherResult(children=ctx.child_results)


#: The system job types; every worker serves these besides its own.
SYSTEM_JOBS: tuple[JobType[Any, Any], ...] = (noop, sleep, fail, gather)
