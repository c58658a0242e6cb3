"""``/v1/queues``: pause and resume a queue or one job type (admin), and see what is paused.

Pausing stops workers from starting the target's jobs within about a second; submissions are
still accepted (their 202 says ``queue_paused``). Resuming starts the parked jobs again, oldest
first. See :mod:`offload.status.pauses` for how nothing is lost meanwhile.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from offload.errors import DependencyError, NotFound
from offload.status import iso
from offload.status.pauses import Pauses
from offload_api.auth import requires
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
            "wait parked."
        ),
        tag="operations",
        responses={200: ("Each queue (and each paused job type) and whether it is paused.", "QueueList"), **_ERRORS},
    )
)
def list_queues() -> Response:
    """Every queue, plus each paused job type: paused since when, how many jobs wait parked."""
    switches = pauses()
    paused = switches.paused()
    names = sorted({*services().registry.queues, *paused})
    return jsonify({"queues": [_state(switches, name, paused) for name in names]})


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
    return jsonify(_state(switches, name, switches.paused()))
