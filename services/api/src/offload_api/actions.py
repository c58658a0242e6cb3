"""Operations on jobs that the JSON API and the admin page both offer, written once."""

from __future__ import annotations

from offload.errors import BrokerUnavailable, InvalidState
from offload_api.extension import Services


def retry(found: Services, job_id: str, *, scope: str | None) -> None:
    """Queue a failed, dead or cancelled job again with its original message; its attempts keep counting.

    Raises:
        InvalidState: the job is not failed, dead or cancelled (or not ``scope``'s).
        BrokerUnavailable: RabbitMQ did not take the message; the job is left failed with
            ``retry_not_enqueued``, so it can be retried again.
    """
    outcome, detail = found.store.lifecycle.reopen(job_id, tenant=scope)
    if outcome != "queued":
        raise InvalidState(f"Job {job_id!r} is {detail}; only failed, dead or cancelled jobs can be retried.")
    try:
        found.publisher.republish(detail.encode())
    except BrokerUnavailable:
        found.store.lifecycle.fail_unstarted(
            job_id, ("retry_not_enqueued", "The retry could not be enqueued; try again.")
        )
        raise
