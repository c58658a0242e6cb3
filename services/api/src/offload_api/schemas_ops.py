"""The shapes of the operations API (issue 22): dead letters and bulk operations.

Request models validate the bodies (a 422 names each field, :func:`offload.contracts.pydantic_errors`);
response models only describe the answers for the OpenAPI document, as ``schemas.py``'s do.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from offload.submission import TAG_PATTERN
from offload_api.schemas import State

#: The longest name, type or code a filter accepts.
_NAME = 200


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Requests.


class DeadLetterRequeue(_Closed):
    """Which dead letters of a queue to requeue: one by ``job_id``, or every one matching all the criteria given.

    An empty body requeues every letter of the queue (malformed ones are never requeued).
    """

    job_id: str | None = Field(default=None, max_length=_NAME, description="Only the letter of this job.")
    type: str | None = Field(default=None, max_length=_NAME, description="Only letters of this job type.")
    reason: str | None = Field(
        default=None, max_length=_NAME, description="Only letters with this reason code (as the listing shows it)."
    )
    dead_from: AwareDatetime | None = Field(default=None, description="Only letters dead-lettered at or after this.")
    dead_to: AwareDatetime | None = Field(default=None, description="Only letters dead-lettered before this.")


class DeadLetterPurge(_Closed):
    """The queue's name, repeated: a purge cannot be undone."""

    confirm: str = Field(max_length=_NAME, description="The name of the queue whose dead letters to delete.")


class JobFilterBody(_Closed):
    """Which jobs a bulk operation acts on: every criterion given must hold.

    Times are ranges ``[from, to)``. None is required, but an operation must match at most the
    API's limit of jobs.
    """

    type: str | None = Field(default=None, max_length=_NAME, description="Only jobs of this type.")
    state: State | None = Field(default=None, description="Only jobs in this state.")
    error_code: str | None = Field(
        default=None, max_length=_NAME, description="Only jobs whose error has this code (failed, dead, retrying)."
    )
    tag: str | None = Field(default=None, pattern=TAG_PATTERN, description="Only jobs carrying this tag.")
    created_from: AwareDatetime | None = Field(default=None, description="Only jobs created at or after this.")
    created_to: AwareDatetime | None = Field(default=None, description="Only jobs created before this.")
    finished_from: AwareDatetime | None = Field(default=None, description="Only jobs that ended at or after this.")
    finished_to: AwareDatetime | None = Field(default=None, description="Only jobs that ended before this.")
    tenant: str | None = Field(default=None, max_length=_NAME, description="Admins only: one tenant's jobs.")


class OperationRequest(_Closed):
    """A bulk operation: an action and the jobs it applies to."""

    action: Literal["retry", "cancel", "delete"] = Field(
        description="retry: failed, dead or cancelled jobs run again; cancel: waiting or running jobs are "
        "cancelled; delete: ended jobs' records are deleted."
    )
    filter: JobFilterBody = Field(description="Which jobs.")


# Responses.


class DeadLetterQueue(_Closed):
    """A queue and how many dead letters it holds."""

    queue: str
    dead: int


class DeadLetterQueues(_Closed):
    """Every queue with its dead letters (``GET /v1/dead-letters``)."""

    queues: list[DeadLetterQueue]


class DeadLetterReasonInfo(_Closed):
    """Why a letter is dead, as Offload recorded it."""

    code: str = Field(description="e.g. permanent_error, validation_failed, unknown_type, malformed, unrecorded.")
    message: str
    fields: list[str]


class DeadLetterItem(_Closed):
    """One dead letter."""

    position: int = Field(description="Its place in the queue, oldest first, from 1.")
    message_id: str | None = Field(description="Null for a malformed letter.")
    job_id: str | None = Field(description="The job whose record names it; null if none does.")
    type: str | None = Field(description="The job type it names; null for a malformed letter.")
    dead_lettered_at: str | None
    reason: DeadLetterReasonInfo
    digest: str = Field(description="SHA-256 of its body.")


class DeadLetterGroup(_Closed):
    """A reason code, how many of the letters read have it and one of their messages."""

    code: str
    count: int
    example: str


class DeadLetterPage(_Closed):
    """A page of a queue's dead letters, oldest first, with the reasons of the oldest counted."""

    queue: str
    depth: int = Field(description="Dead letters in the queue.")
    counted: int = Field(description="How many of them `groups` counts (the oldest).")
    page: int
    pages: int
    letters: list[DeadLetterItem]
    groups: list[DeadLetterGroup]


class DeadLettersRequeued(_Closed):
    """What a requeue did."""

    matched: int = Field(description="Letters the filter matched.")
    requeued: int = Field(description="Letters requeued (a job's letter as a retry of the job).")
    malformed: int = Field(description="Matched letters left in place: malformed, they can only be purged.")


class DeadLettersPurged(_Closed):
    """What a purge did."""

    purged: int


class OperationProgress(_Closed):
    """A bulk operation and how far it is."""

    id: str
    action: Literal["retry", "cancel", "delete"]
    state: Literal["running", "succeeded", "failed"]
    tenant: str | None = Field(description="The tenant whose jobs it acts on; null for every tenant (admins).")
    filter: dict[str, str] = Field(description="The filter, as given.")
    matched: int = Field(description="Jobs the filter matched when the operation began.")
    done: int = Field(description="Jobs the action was applied to.")
    skipped: int = Field(description="Jobs it did not apply to any more (retried, ended or gone meanwhile).")
    failed: int = Field(description="Jobs it could not be applied to (the broker refused a retry).")
    created_at: str
    finished_at: str | None
    error: str | None = Field(description="Why the operation stopped, when it failed.")


RESPONSES: tuple[type[BaseModel], ...] = (
    DeadLetterQueues,
    DeadLetterPage,
    DeadLettersRequeued,
    DeadLettersPurged,
    OperationProgress,
)
REQUESTS: tuple[type[BaseModel], ...] = (DeadLetterRequeue, DeadLetterPurge, OperationRequest)
