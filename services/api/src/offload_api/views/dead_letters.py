"""``/v1/dead-letters``: the dead letters of each queue, listed with their reasons, requeued, purged (admin).

Admins only: a dead letter may name no job record (malformed, or refused before one could be
written), so it has no tenant to show it to. The admin page does the same through the same code
(:mod:`offload_api.admin.letters`, :func:`offload_api.actions.requeue_letter`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import pika.exceptions
from flask import Blueprint, Response, jsonify, request

from offload import dead_letters, problems
from offload.errors import BrokerUnavailable, NotFound, ValidationFailed
from offload.status import iso, redis_errors
from offload_api import actions
from offload_api.admin import letters
from offload_api.audit import admin_action
from offload_api.auth import requires
from offload_api.bodies import model_body
from offload_api.collectors import read_queues
from offload_api.extension import services
from offload_api.openapi_meta import Operation, documented
from offload_api.schemas_ops import DeadLetterPurge, DeadLetterRequeue
from offload_api.views.queues import known_queue

bp = Blueprint("dead_letters", __name__, url_prefix="/v1/dead-letters")

_ERRORS = {
    401: ("Missing or invalid API key.", "Error"),
    403: ("Not an admin key.", "Error"),
    503: ("Broker or Redis unavailable; retry later.", "Error"),
}
_QUEUE_ERRORS = {404: ("No such queue.", "Error"), **_ERRORS}
_BODY_ERRORS = {
    400: ("Malformed JSON.", "Error"),
    415: ("Not JSON.", "Error"),
    422: ("A field is invalid; `errors` names it.", "Error"),
}


@contextlib.contextmanager
def broker_errors() -> Iterator[None]:
    """Turn a broker that cannot be reached into a 503 (``broker_unavailable``)."""
    try:
        yield
    except pika.exceptions.AMQPError:
        raise BrokerUnavailable("RabbitMQ could not be reached; retry later.") from None


def _broker_url() -> str:
    return services().settings.broker_url.get_secret_value()


@bp.get("")
@requires("admin")
@documented(
    Operation(
        "List the queues with their dead letters",
        description="Every queue and how many dead letters it holds (RabbitMQ keeps them 7 days).",
        tag="dead-letters",
        responses={200: ("Every queue's dead letters.", "DeadLetterQueues"), **_ERRORS},
    )
)
def list_queues() -> Response:
    """Every declared queue with the depth of its dead-letter queue."""
    depths = read_queues(_broker_url(), services().registry.queues)
    if depths is None:
        raise BrokerUnavailable("RabbitMQ could not be reached; retry later.")
    return jsonify({"queues": [{"queue": depth.queue, "dead": depth.dead} for depth in depths]})


@bp.get("/<queue>")
@requires("admin")
@documented(
    Operation(
        "List a queue's dead letters",
        description=(
            f"A page ({letters.PAGE_SIZE} letters) of the queue's dead letters, oldest first, each with the reason "
            "Offload recorded (RabbitMQ only says `rejected`) and the job it names; and the reasons of the oldest "
            f"{letters.SUMMARY_SCAN} counted by code. Letters are read and left in place."
        ),
        tag="dead-letters",
        query=(("page", {"type": "integer", "minimum": 1, "default": 1}, "The page, from 1."),),
        responses={200: ("A page of dead letters.", "DeadLetterPage"), **_QUEUE_ERRORS},
    )
)
def list_letters(queue: str) -> Response:
    """A page of ``queue``'s dead letters with their reasons, and the reasons counted."""
    found = services()
    with broker_errors(), redis_errors():
        page = letters.load(
            _broker_url(), found.store, known_queue(queue), letters.page_number(request.args.get("page"))
        )
    items = [
        {
            "position": row.position,
            "message_id": row.letter.message.message_id if row.letter.message else None,
            "job_id": row.job_id,
            "type": row.letter.message.actor_name if row.letter.message else None,
            "dead_lettered_at": iso(int(row.letter.dead_lettered_at.timestamp() * 1000))
            if row.letter.dead_lettered_at
            else None,
            "reason": {"code": row.reason.code, "message": row.reason.message, "fields": list(row.reason.fields)},
            "digest": row.letter.digest,
        }
        for row in page.rows
    ]
    groups = [{"code": g.code, "count": g.count, "example": g.example} for g in page.groups]
    return jsonify(
        {
            "queue": queue,
            "depth": page.depth,
            "counted": page.counted,
            "page": page.number,
            "pages": page.pages,
            "letters": items,
            "groups": groups,
        }
    )


@bp.post("/<queue>/requeue")
@requires("admin")
@documented(
    Operation(
        "Requeue a queue's dead letters",
        description=(
            "Requeues the letter of `job_id`, or every letter matching all the criteria given (job type, reason code, "
            "dead-lettered between `dead_from` and `dead_to`); an empty body requeues them all. A letter naming a "
            "job is run again as a retry of that job (its attempts keep counting); one naming none is published as "
            f"it is. Malformed letters are never requeued (they are counted). The oldest {dead_letters.MAX_PER_QUEUE} "
            "letters are looked at."
        ),
        tag="dead-letters",
        request="DeadLetterRequeue",
        responses={
            200: ("What was requeued.", "DeadLettersRequeued"),
            **_BODY_ERRORS,
            **_QUEUE_ERRORS,
            404: ("No such queue, or no dead letter of `job_id` in it.", "Error"),
        },
    )
)
def requeue(queue: str) -> Response:
    """Requeue one letter (by job id) or those matching a filter, as retries of their jobs."""
    wanted = model_body(DeadLetterRequeue)
    found = services()
    handle = functools.partial(actions.requeue_letter, found)
    with broker_errors(), redis_errors():
        if wanted.job_id is not None:
            taken = dead_letters.take_one(_broker_url(), known_queue(queue), wanted.job_id, handle)
            admin_action("dead_letters.requeue", f"{queue} job {wanted.job_id[:64]}", "ok" if taken else "not_found")
            if not taken:
                raise NotFound(f"Queue {queue!r} holds no dead letter of job {wanted.job_id[:64]!r}.")
            return jsonify({"matched": 1, "requeued": 1, "malformed": 0})
        where = letters.LetterFilter(
            job_type=wanted.type, reason=wanted.reason, dead_from=wanted.dead_from, dead_to=wanted.dead_to
        )
        outcome = letters.requeue(_broker_url(), found.store, known_queue(queue), where, handle)
    admin_action("dead_letters.requeue", queue, f"requeued {outcome.requeued} of {outcome.matched}")
    return jsonify({"matched": outcome.matched, "requeued": outcome.requeued, "malformed": outcome.malformed})


@bp.post("/<queue>/purge")
@requires("admin")
@documented(
    Operation(
        "Purge a queue's dead letters",
        description=(
            'Deletes every dead letter of the queue, for good. The body repeats the queue\'s name, `{"confirm": '
            '"<queue>"}`: another name is a 422 and deletes nothing.'
        ),
        tag="dead-letters",
        request="DeadLetterPurge",
        responses={200: ("How many were deleted.", "DeadLettersPurged"), **_BODY_ERRORS, **_QUEUE_ERRORS},
    )
)
def purge(queue: str) -> Response:
    """Delete every dead letter of ``queue``, once its name is repeated in the body."""
    confirmed = model_body(DeadLetterPurge)
    if confirmed.confirm != known_queue(queue):
        raise ValidationFailed(
            f"Repeat the queue's name ({queue!r}) in `confirm` to purge its dead letters.",
            errors=[problems.in_body("confirm", "confirmation_mismatch", "must be the queue's name")],
        )
    with broker_errors():
        purged = dead_letters.purge(_broker_url(), queue)
    admin_action("dead_letters.purge", queue, f"purged {purged}")
    return jsonify({"purged": purged})
