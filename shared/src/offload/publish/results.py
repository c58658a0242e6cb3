"""What a submission answers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Submitted:
    """The answer to a submission: the job's id and state; ``replayed`` when an idempotency key matched."""

    job_id: str
    state: str
    replayed: bool = False


@dataclass(frozen=True)
class BatchSubmitted:
    """The answer to a batch submission."""

    batch_id: str
    jobs: list[Submitted]
    #: The job that runs once the batch's jobs have ended, if one was asked for.
    then: Submitted | None = None


@dataclass(frozen=True)
class SubmittedNode:
    """One node of a submitted flow: its name, job id and first state."""

    name: str
    job_id: str
    state: str


@dataclass(frozen=True)
class FlowSubmitted:
    """The answer to a flow submission; ``replayed`` when its idempotency key matched an earlier one."""

    flow_id: str
    nodes: list[SubmittedNode]
    replayed: bool = False
