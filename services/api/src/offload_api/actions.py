"""Operations on jobs that the JSON API and the admin page both offer, written once."""

from __future__ import annotations

from offload import dead_letters
from offload.errors import BrokerUnavailable, ClientError, InvalidState
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


def requeue_letter(found: Services, body: bytes) -> None:
    """Retry the job a dead letter names; publish the job's stored message if it is not failed, or the letter.

    A job's record, never a letter's body, says what a recorded job runs: the letter may be a
    stranger's message that named the job's id (refused ``duplicate_job_id``). A letter naming no
    job is published as it is, on behalf of its first publisher (``offload.delivery.forwarded``).

    Raises:
        BrokerUnavailable: RabbitMQ did not take the message (the letter stays dead-lettered).
    """
    message = dead_letters.decode(body)
    stored = found.store.queries.stored_message(message.message_id) if message is not None else None
    if message is not None and stored is not None:
        try:
            retry(found, message.message_id, scope=None)
            return
        except ClientError:
            body = stored  # not failed any more (retried already): its own message again
    found.publisher.republish(body)
