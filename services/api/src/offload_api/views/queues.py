"""``/v1/queues``: each queue's depths, consumers and jobs by state; pause and resume a queue or job type (admin).

Pausing stops workers from starting the target's jobs within about a second; submissions are
still accepted (their 202 says ``queue_paused``). Resuming starts the parked jobs again, oldest
first. See :mod:`offload.status.pauses` for how nothing is lost meanwhile.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from offload.errors import DependencyError, NotFound
from offload.status import JobState, iso, redis_errors
from offload.status.pauses import Pauses
from offload.status.stats import type_state_counts
from offload_api.audit import admin_action
from offload_api.auth import requires
from offload_api.collectors import read_queues
from offload_api.extension import Services, services
from offload_api.openapi_meta import Operation, documented

bp = Blueprint("queues", __name__, url_prefix="/v1/queues")

_ERRORS = {401: ("Missing or invalid API key.", "Error"), 403: ("Not an admin key.", "Error")}


_cached: dict[int, Pauses] = {}


def pauses(found: Services | None = None) -> Pauses:
    """The pause switches, on the status store's Redis (one per process: it caches for a second)."""
    found = found or services()
    switches = _cached.get(id(found))
    if switches is None:
        switches = _cached[id(found)] = Pauses(found.store)
    return switches


def paused_target(found: Services, queue: str, job_type: str) -> str | None:
    """The paused queue or job type a new job falls under (a copy at most a second old), or None.

    None too when Redis cannot say: the job is accepted already, and this is only a hint.
    """
    try:
        return pauses(found).paused_target(queue, job_type)
    except DependencyError:
        return None


def known_queue(name: str) -> str:
    """``name``, a queue of the catalogue.

    Raises:
        NotFound: no queue has that name.
    """
    if name not in services().registry.queues:
        raise NotFound(f"There is no queue {name[:64]!r}.")
    return name


def _target(name: str) -> str:
    if name not in services().registry.queues and name not in services().registry.names:
        raise NotFound(f"There is no queue or job type {name!r}.")
    return name


def _state(switches: Pauses, name: str, paused: dict[str, int]) -> dict[str, object]:
    since = paused.get(name)
    return {
        "name": name,
        "kind": "queue" if name in services().registry.queues else "job_type",
        "paused": since is not None,
        "paused_since": iso(since) if since is not None else None,
        "parked": switches.parked_count(name),
    }


@bp.get("")
@requires("admin")
@documented(
    Operation(
        "List the queues, and every paused queue or job type",
        description=(
            "Every queue, and every paused job type: whether it is paused, since when, and how many of its jobs "
            "wait parked; for a queue also its messages in RabbitMQ (ready, delayed, dead-lettered), its "
            "consumers and its jobs by state. `unacked` is null: AMQP cannot read it."
        ),
        tag="operations",
        responses={200: ("Each queue (and each paused job type) and whether it is paused.", "QueueList"), **_ERRORS},
    )
)
def list_queues() -> Response:
    """Every queue with its depths, consumers and jobs by state, plus each paused job type."""
    found = services()
    switches = pauses()
    paused = switches.paused()
    names = sorted({*found.registry.queues, *paused})
    depths = read_queues(found.settings.broker_url.get_secret_value(), found.registry.queues)
    by_queue = {depth.queue: depth for depth in depths or []}
    with redis_errors():
        jobs = queue_jobs(found)
    listed = []
    for name in names:
        state = _state(switches, name, paused)
        if state["kind"] == "queue":
            depth = by_queue.get(name)
            state.update(
                ready=depth.ready if depth else None,
                unacked=None,
                delayed=depth.delayed if depth else None,
                dead=depth.dead if depth else None,
                consumers=depth.consumers if depth else None,
                jobs=jobs.get(name, dict.fromkeys((s.value for s in JobState), 0)),
            )
        listed.append(state)
    return jsonify({"queues": listed})


def queue_jobs(found: Services) -> dict[str, dict[str, int]]:
    """Each queue's jobs by state: its job types' counts summed (a type no longer catalogued is left out).

    Raises:
        redis.RedisError: Redis is unavailable.
    """
    totals: dict[str, dict[str, int]] = {}
    for job_type, counts in type_state_counts(found.store).items():
        if job_type not in found.registry:
            continue
        queue = totals.setdefault(found.registry.get(job_type).queue, dict.fromkeys(counts, 0))
        for state, count in counts.items():
            queue[state] += count
    return totals


@bp.post("/<name>/pause")
@requires("admin")
@documented(
    Operation(
        "Pause a queue or a job type",
        description=(
            "Workers stop starting the jobs of `name` (a queue or a job type) within about a second. Submissions "
            "are still accepted (their answer says `queue_paused`) and their jobs wait parked: nothing is lost."
        ),
        tag="operations",
        responses={200: ("Paused.", "QueueState"), 404: ("No such queue or job type.", "Error"), **_ERRORS},
    )
)
def pause(name: str) -> Response:
    """Stop workers from starting the jobs of ``name`` (a queue or a job type); submissions go on."""
    switches = pauses()
    switches.pause(_target(name))
    admin_action("queue.pause", name)
    return jsonify(_state(switches, name, switches.paused()))


@bp.post("/<name>/resume")
@requires("admin")
@documented(
    Operation(
        "Resume a paused queue or job type",
        description="Workers start the jobs of `name` again; the parked ones are published again, oldest first.",
        tag="operations",
        responses={
            200: ("Resumed; parked jobs start again.", "QueueState"),
            404: ("No such queue or job type.", "Error"),
            **_ERRORS,
        },
    )
)
def resume(name: str) -> Response:
    """Let workers start the jobs of ``name`` again; the parked ones are published oldest first."""
    switches = pauses()
    switches.resume(_target(name))
    admin_action("queue.resume", name)
    return jsonify(_state(switches, name, switches.paused()))
