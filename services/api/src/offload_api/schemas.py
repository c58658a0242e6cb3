"""Response shapes, as pydantic models used only to generate the OpenAPI document.

Responses are built as plain dicts on the hot path; tests validate real responses against the
JSON Schemas generated from these models, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from offload.status import JobState

State = Literal["queued", "scheduled", "running", "retrying", "succeeded", "failed", "cancelled", "dead"]
assert set(State.__args__) == {s.value for s in JobState}  # type: ignore[attr-defined]


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldProblem(_Closed):
    """One field that broke its schema or a rule: where it is, which rule, and what is wrong (``offload.problems``)."""

    field: str = Field(
        description="The field's path in the request, e.g. 'payload.to[0].email'; for a query parameter, a header "
        "or a form field, its name."
    )
    pointer: str | None = Field(
        description="The same field as a JSON Pointer (RFC 6901) into the JSON body, e.g. '/payload/to/0/email' "
        "('' is the whole body); null for a query parameter, a header or a form field."
    )
    rule: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        description="The rule it broke, stable and machine-readable: pydantic's error type for a schema rule "
        "(missing, extra_forbidden, int_type, int_parsing, string_too_long, greater_than_equal, ...) or "
        "Offload's own (url_not_allowed, scheme_not_allowed, domain_not_allowed, ...).",
        examples=["missing", "greater_than_equal", "url_not_allowed"],
    )
    problem: str = Field(description="What is wrong with it, for people (never the value sent).")


class Error(_Closed):
    """Every error response."""

    error: str = Field(description="Stable machine-readable code, e.g. 'validation_failed'.")
    detail: str = Field(description="One sentence for humans.")
    errors: list[FieldProblem] | None = Field(default=None, description="Per-field problems (422).")
    retry_after: int | None = Field(default=None, description="Seconds to wait before retrying (503).")
    job_id: str | None = Field(default=None, description="The job an Idempotency-Key already names (409).")
    request_id: str | None = Field(default=None, description="Quote it when reporting a 500.")


class JobAccepted(_Closed):
    """Answer to a submission: 202 when new, 200 when an Idempotency-Key matched an earlier one."""

    id: str
    state: State
    status_url: str
    events_url: str
    queue_paused: bool | None = Field(
        default=None, description="True when the job's queue or type is paused: it starts on resume."
    )
    token: str | None = Field(
        default=None, description='With "token": true: a read-only browser token for this job (use as ?token=).'
    )
    token_expires_at: str | None = Field(default=None, description="When the token expires, ISO 8601 UTC.")


class Progress(_Closed):
    """Progress of the current attempt."""

    percent: int = Field(ge=0, le=100)
    message: str | None


class JobErrorInfo(_Closed):
    """Why the job (or its last attempt) failed."""

    code: str
    message: str | None
    errors: list[FieldProblem] | None = Field(
        default=None, description="Per-field problems of a job published on the wire and refused at adoption."
    )


class _StateChange(BaseModel):
    """A state change as the status store records and publishes it: in a job's history and as a ``state`` event."""

    seq: int = Field(description="The job's event sequence number (the same as on the events stream).")
    state: State
    attempt: int = Field(description="The attempt it belongs to (0 before the first).")
    progress: int
    error: JobErrorInfo | None = Field(default=None, description="Why: on failed, retrying, cancelled and dead.")


class HistoryEntry(_StateChange):
    """One state change in a job's history (``GET /v1/jobs/{id}``)."""

    kind: str
    at: int = Field(description="Milliseconds since the epoch.")


class JobFlow(_Closed):
    """The flow a job is a node of: the flow's id and the node's name."""

    id: str
    node: str


class Job(_Closed):
    """A job's record."""

    id: str
    type: str
    state: State
    progress: Progress
    result: Any = None
    error: JobErrorInfo | None
    attempts: int
    max_retries: int
    priority: Literal["high", "normal", "low"]
    queue: str
    tenant: str
    payload: Any = None
    cancel_requested: bool
    created_at: str | None
    scheduled_for: str | None
    started_at: str | None
    finished_at: str | None
    updated_at: str | None
    batch_id: str | None
    parent_id: str | None
    callback_url: str | None
    flow: JobFlow | None = Field(description="The flow the job is a node of (POST /v1/flows, or a batch), if any.")
    then: list[str]
    webhook_id: str | None = Field(description="The delivery job calling callback_url back, once the job ended.")
    tags: list[str] = Field(description="The tags it was submitted with (options.tags).")
    metadata: dict[str, str] = Field(description="The metadata it was submitted with (options.metadata).")
    trace_id: str | None = Field(
        default=None,
        pattern="^[0-9a-f]{32}$",
        description="The OpenTelemetry trace the job's spans are in (docs/tracing.md); null while tracing is off.",
    )
    seq: int
    history: list[HistoryEntry] | None = None


class WebhookEvent(_Closed):
    """The body of a webhook delivery (``offload_email.webhooks``): an envelope around the job's record."""

    type: Literal[
        "job.queued",
        "job.scheduled",
        "job.running",
        "job.retrying",
        "job.succeeded",
        "job.failed",
        "job.cancelled",
        "job.dead",
    ] = Field(
        description="'job.' and the job's state when the delivery was made: the state it ended in (job.succeeded, "
        "job.failed, job.cancelled or job.dead), unless the job was retried by hand before its delivery went out."
    )
    timestamp: str = Field(description="When this attempt's body was made, ISO 8601 UTC (each attempt makes its own).")
    data: Job = Field(description="The job's record as GET /v1/jobs/{job_id} answers it, without its history.")


assert set(get_args(WebhookEvent.model_fields["type"].annotation)) == {f"job.{state.value}" for state in JobState}


class JobPage(_Closed):
    """A page of jobs."""

    jobs: list[Job]
    next_cursor: str | None


class FlowNodeAccepted(_Closed):
    """One node of an accepted flow: its name, its job's id and first state (``waiting`` for a node with needs)."""

    name: str
    id: str
    state: str
    status_url: str
    events_url: str


class BatchAccepted(_Closed):
    """Answer to a batch submission."""

    id: str
    status_url: str
    events_url: str = Field(description="The batch's flow events: each job's changes, and its completion.")
    jobs: list[JobAccepted]
    then: FlowNodeAccepted | None = Field(
        default=None, description="The job that runs once every job has ended: the batch flow's node `then`."
    )


class BatchJob(_Closed):
    """One job of a batch."""

    id: str
    state: str


class Batch(_Closed):
    """A batch's aggregate status."""

    id: str
    state: Literal["running", "succeeded", "failed", "cancelled"] = Field(
        description="As a flow's: running until every job (and then) has ended."
    )
    total: int
    finished: int
    done: bool
    progress: int
    counts: dict[str, int]
    created_at: int
    jobs: list[BatchJob]
    then: BatchJob | None = Field(default=None, description="The job that runs once every job has ended.")


class FlowAccepted(_Closed):
    """Answer to a flow submission."""

    id: str
    status_url: str
    events_url: str
    nodes: list[FlowNodeAccepted]


class FlowNode(_Closed):
    """One node of a flow: its name, its job's id and its job's state (``waiting`` while it waits for its needs)."""

    name: str
    job_id: str
    state: str
    progress: int = Field(description="0-100; an ended node counts as 100.")


class Flow(_Closed):
    """A flow's status: ``running`` until every node has ended, then ``succeeded``, ``failed`` or ``cancelled``."""

    id: str
    tenant: str
    kind: Literal["flow", "batch"] = Field(description="A batch is a flow too (POST /v1/batches).")
    state: Literal["running", "succeeded", "failed", "cancelled"]
    halted: Literal["failed", "cancelled"] | None = Field(
        description="Set once a node failed behind a `fail` need, or the flow was cancelled: nothing more starts, "
        "and the flow ends so once its running nodes have ended."
    )
    total: int = Field(description="Nodes in the flow.")
    pending: int = Field(description="Nodes that have not ended yet.")
    progress: int = Field(description="0-100: the nodes' progress (an ended node counts as 100), averaged.")
    counts: dict[str, int] = Field(description="Nodes per state (`waiting` for those waiting for their needs).")
    created_at: int
    finished_at: int | None
    nodes: list[FlowNode]


class FlowCancelled(_Closed):
    """Answer to a flow's cancel: the flow's state now, and how many nodes that had not started were cancelled."""

    id: str
    state: str
    cancelled: int


class JobType(_Closed):
    """One registered job type."""

    type: str
    description: str
    queue: str
    priority: str
    time_limit_seconds: float
    retry: dict[str, float]
    payload_schema: dict[str, Any]
    service: str | None = Field(
        description="The worker service that registered it (``system``: every worker); null if none has yet."
    )
    schema_hash: str | None = Field(description="The hash of its queue and payload and result schemas, as registered.")
    live_workers: int | None = Field(
        description="Worker processes that sent a heartbeat for it in the last 30 s; 0 means jobs wait queued "
        "(no live worker); null when the catalogue could not be read."
    )
    validated_by: Literal["model", "json_schema"] = Field(
        description="How the API checks its payloads: the full model (a type the API imports) or the registered "
        "JSON Schema (the worker then checks its full model too)."
    )


class JobTypeList(_Closed):
    """Every registered job type."""

    job_types: list[JobType]


class WebhookSecret(_Closed):
    """The tenant's webhook signing secret."""

    secret: str = Field(description="whsec_ followed by base64; verify deliveries with it (Standard Webhooks).")
    rotation_overlap_seconds: int


class VapidPublicKey(_Closed):
    """The key browsers subscribe with (``pushManager.subscribe({applicationServerKey})``)."""

    public_key: str = Field(description="The VAPID public key: a P-256 point, uncompressed (65 bytes), base64url.")


class PushSubscription(_Closed):
    """A browser's push subscription, as this API keeps it (its keys are never shown)."""

    id: str = Field(description="The same for the same browser endpoint: subscribing again replaces it.")
    user_id: str
    endpoint: str
    created_at: str


class PushSubscriptionList(_Closed):
    """A user's push subscriptions, oldest first."""

    subscriptions: list[PushSubscription]


class Upload(_Closed):
    """A stored upload."""

    id: str
    content_type: str
    size: int
    filename: str | None
    created_at: str | None


class ScheduleRun(_Closed):
    """The last run of a tenant's schedule."""

    job_id: str
    state: State | None = Field(description="The job's state now (null once its record expired).")
    at: str | None = Field(description="When it was enqueued, ISO 8601 UTC.")


class ScheduleItem(_Closed):
    """One schedule: a shipped one (``owner`` ``system``, read-only) or one a tenant made."""

    id: str = Field(description="The schedule's id (a shipped one's is its name).")
    name: str
    owner: str = Field(description="'system' for a shipped schedule, else the tenant it belongs to.")
    read_only: bool = Field(description="True for the shipped schedules: they cannot be changed over the API.")
    job_type: str
    cron: str | None = Field(description="Five cron fields, or null for an interval schedule.")
    interval: int | None = Field(description="Seconds between runs, or null for a cron schedule.")
    timezone: str = Field(description="The IANA time zone of the cron expression.")
    description: str
    job: dict[str, Any] | None = Field(description="The job submitted at each tick (null for a shipped schedule).")
    missed: Literal["skip", "run_once", "run_all"] = Field(description="What happens to ticks missed meanwhile.")
    catch_up_limit: int | None = Field(description="The most missed ticks 'run_all' runs after a downtime.")
    paused: bool
    paused_at: str | None
    next_run_at: str | None = Field(description="The next tick, ISO 8601 (null while paused).")
    last_run_at: str | None = Field(description="The last run enqueued (a shipped schedule's: its tick), or null.")
    last_run: ScheduleRun | None = Field(description="A tenant's schedule's last run and its job's state.")
    missed_runs: int = Field(description="Ticks missed and not run (after a downtime, by the missed-tick policy).")
    last_error: str | None = Field(description="Why the last tick did not run (its job was refused), if so.")
    created_at: str | None
    updated_at: str | None


class ScheduleList(_Closed):
    """Every schedule the scheduler runs."""

    schedules: list[ScheduleItem]


class StatsGroup(_Closed):
    """Jobs of one type, tenant and state created in one hour."""

    type: str
    tenant: str
    state: State
    count: int
    duration_ms: dict[str, int] | None = Field(description="p50/p95/p99 of the last attempt's run time.")
    wait_ms: dict[str, int] | None = Field(description="p50/p95/p99 of the wait from enqueue (or retry) to start.")


class StatsHour(_Closed):
    """One hour's statistics."""

    hour: str
    groups: list[StatsGroup]


class StatsTotal(_Closed):
    """Counts over the whole range for one type and tenant."""

    type: str
    tenant: str
    counts: dict[str, int]
    failure_rate: float | None = Field(description="(failed + dead) / ended; None when none ended.")


class Stats(_Closed):
    """Hourly statistics over a range."""

    from_: str = Field(alias="from")
    to: str
    hours: list[StatsHour]
    totals: list[StatsTotal]


class _LogEntry(_Closed):
    """A line of a job's log as the status store records and publishes it: in its log and as a ``log`` event."""

    seq: int = Field(description="The job's event sequence number (the same as on the events stream).")
    attempt: int
    line: str = Field(max_length=500)


class LogLine(_LogEntry):
    """One line a job's handler wrote to the job's log (``GET /v1/jobs/{id}/logs``)."""

    kind: str = Field(description="Always 'log'.")
    at: int = Field(description="Milliseconds since the epoch.")


class JobLogs(_Closed):
    """A job's log, oldest line first (the newest 200 lines are kept, as long as the job)."""

    logs: list[LogLine]


class QueueState(_Closed):
    """Whether a queue (or a job type) is paused, and how many of its jobs wait parked."""

    name: str
    kind: Literal["queue", "job_type"]
    paused: bool
    paused_since: str | None = Field(description="ISO 8601 time of the pause; null if not paused.")
    parked: int = Field(description="Jobs received while paused, waiting to start on resume.")
    ready: int | None = Field(
        default=None, description="A queue's messages ready in RabbitMQ; null for a job type, or if RabbitMQ is down."
    )
    unacked: int | None = Field(
        default=None,
        description="Messages delivered and not yet acknowledged: AMQP cannot read this, so always null here "
        "(RabbitMQ's Prometheus plugin exports it).",
    )
    delayed: int | None = Field(default=None, description="Messages in the queue's delay queue (delays, retries).")
    dead: int | None = Field(default=None, description="Messages in the queue's dead-letter queue.")
    consumers: int | None = Field(default=None, description="Consumers of the queue (worker processes' channels).")
    jobs: dict[str, int] | None = Field(
        default=None, description="A queue's jobs by state (ended ones until their retention ends), from Redis."
    )


class QueueList(_Closed):
    """Every queue, and every paused job type."""

    queues: list[QueueState]


class Health(_Closed):
    """``GET /healthz``: the process answers."""

    status: Literal["ok"]


Check = Literal["ok", "unavailable"]


class Readiness(_Closed):
    """``GET /readyz``: whether each server the API needs answers."""

    status: Check = Field(description="ok when every check is ok.")
    checks: dict[Literal["redis", "broker"], Check]


# The ``data`` of each event of a job's stream (``GET /v1/jobs/{id}/events``). The status store's
# scripts publish the history entries, log lines and notices above; the stream sends each as it
# is but with ``at`` as ISO 8601, and adds the job to a terminal ``state`` event. Closed, so a field
# a script starts to publish fails the schema checks until it is documented here.

#: ``at`` as the stream sends it: :func:`offload.status.iso` of the milliseconds the store records.
_AT = "When it happened, ISO 8601 UTC."


class FlowNodeEvent(_Closed):
    """A node of the flow changed state (``node`` event)."""

    kind: Literal["node"]
    node: str
    job_id: str
    state: str
    at: str | None = Field(description=_AT)


class StateEvent(_StateChange):
    """A ``state`` event: the job moved to ``state``. A terminal state carries the whole job."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["state"]
    at: str | None = Field(description=_AT)
    retry_at: int | None = Field(default=None, description="On retrying: when it runs again, ms since the epoch.")
    counted: bool | None = Field(
        default=None, description="On retrying: false when the attempt was held back before it ran (not counted)."
    )
    redelivered: bool | None = Field(default=None, description="On running: the broker delivered the message again.")
    reopened: bool | None = Field(default=None, description="On queued: the job was retried by hand.")
    job: Job | None = Field(default=None, description="On a terminal state: the job, with its result or error.")


class ProgressEvent(_Closed):
    """A ``progress`` event: the running attempt reported its progress."""

    seq: int = Field(description="The job's event sequence number (the same as the event's id).")
    kind: Literal["progress"]
    state: Literal["running"]
    at: str | None = Field(description=_AT)
    attempt: int
    progress: int = Field(ge=0, le=100)
    message: str | None


class LogEvent(_LogEntry):
    """A ``log`` event: a line the job's handler wrote to its log."""

    kind: Literal["log"]
    at: str | None = Field(description=_AT)


class CancelRequestedEvent(_Closed):
    """A ``cancel_requested`` event: the running job was asked to stop; its handler stops at its next check."""

    seq: int = Field(description="The job's event sequence number (the same as the event's id).")
    kind: Literal["cancel_requested"]
    state: Literal["running"]
    at: str | None = Field(description=_AT)


#: The events the status store publishes for a job, by their SSE event name (the ``kind`` their
#: data carries), with the model of their ``data``.
JOB_EVENTS: dict[str, type[BaseModel]] = {
    "state": StateEvent,
    "progress": ProgressEvent,
    "log": LogEvent,
    "cancel_requested": CancelRequestedEvent,
}
assert all(get_args(model.model_fields["kind"].annotation) == (name,) for name, model in JOB_EVENTS.items())


class BrowserToken(_Closed):
    """A read-only browser token (``POST /v1/jobs/{id}/token``, ``POST /v1/events/token``)."""

    token: str = Field(description="Pass it as ?token= on the routes its scope opens; never log it.")
    token_expires_at: str = Field(description="When it expires, ISO 8601 UTC.")
    scope: str = Field(description="What it reads: 'job:<id>', 'tag:<tag>' or 'tenant'.")


class _StrictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class JobTokenRequest(_StrictRequest):
    """The (optional) body of ``POST /v1/jobs/{id}/token``."""

    ttl: int | None = Field(default=None, ge=10, description="Seconds the token is valid (default and cap: settings).")


class EventsTokenRequest(_StrictRequest):
    """The (optional) body of ``POST /v1/events/token``: a tag's token, or (no tag) the tenant's."""

    tag: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.:/-]{1,64}$",
        description="Read only GET /v1/events?tag=<tag>; without it, the tenant's whole feed.",
    )
    ttl: int | None = Field(default=None, ge=10, description="Seconds the token is valid (default and cap: settings).")


class _FeedFields(BaseModel):
    """What ``GET /v1/events`` adds to a job's event: which job, of whom, and what it is filed under."""

    job_id: str
    tenant: str
    type: str
    queue: str
    tags: list[str]


class FeedStateEvent(_FeedFields, StateEvent):
    """A ``state`` event of ``GET /v1/events``: a job moved to ``state`` (no ``job``: read it with GET)."""


class FeedProgressEvent(_FeedFields, ProgressEvent):
    """A ``progress`` event of ``GET /v1/events``."""


class FeedCancelRequestedEvent(_FeedFields, CancelRequestedEvent):
    """A ``cancel_requested`` event of ``GET /v1/events``."""


#: The job events ``GET /v1/events`` sends, by name, with the model of their data.
FEED_EVENTS: dict[str, type[BaseModel]] = {
    "state": FeedStateEvent,
    "progress": FeedProgressEvent,
    "cancel_requested": FeedCancelRequestedEvent,
}


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    Upload,
    Error,
    JobAccepted,
    Job,
    JobPage,
    BatchAccepted,
    Batch,
    FlowAccepted,
    Flow,
    FlowCancelled,
    FlowNodeEvent,
    JobTypeList,
    WebhookSecret,
    VapidPublicKey,
    PushSubscription,
    PushSubscriptionList,
    ScheduleList,
    ScheduleItem,
    Stats,
    JobLogs,
    QueueState,
    QueueList,
    Health,
    Readiness,
    WebhookEvent,
    StateEvent,
    ProgressEvent,
    LogEvent,
    CancelRequestedEvent,
    BrowserToken,
    FeedStateEvent,
    FeedProgressEvent,
    FeedCancelRequestedEvent,
)
