"""Jobs Offload creates itself to call clients back: consumed by services/worker-email (notifications)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from offload.contracts._base import JobContract, Payload, RetryPolicy

WEBHOOK_QUEUE = "webhooks"


class DeliverWebhookPayload(Payload):
    """Deliver the final record of ``job_id`` to its ``callback_url``, signed with its tenant's secret."""

    job_id: str = Field(max_length=64)
    url: str = Field(max_length=2048)
    seq: int = Field(ge=0, description="The job's terminal event, so that a re-run's ending is a new delivery.")


class DeliverWebhookResult(BaseModel):
    """What ``webhook.deliver`` returns."""

    status: int
    webhook_id: str


DELIVER = JobContract(
    name="webhook.deliver",
    queue=WEBHOOK_QUEUE,
    payload=DeliverWebhookPayload,
    result=DeliverWebhookResult,
    description="Signed POST of a finished job's record to its callback URL (Standard Webhooks), with retries.",
    retry=RetryPolicy(max_retries=8, max_retries_limit=8, min_backoff=2, max_backoff=900),
    time_limit=60,
    internal=True,
    exhausted_state="dead",
)

CONTRACTS = (DELIVER,)
