"""The admin pages: server-rendered (Jinja2), no build step, no inline script (a strict CSP).

Offload's answer to Bull Board, Flower and Sidekiq Web: the queues with their depths and
consumers, jobs found by id, state, type or tenant, a job's history, error and result (refreshed
while it runs), retry and cancel, dead letters to inspect page by page with the reason Offload
recorded (counted by reason), requeue (as a retry of their job), purge one by one or all with a
typed confirmation, and the schedules with their next and last runs (a tenant's to pause, resume,
run now or delete), the API keys (made, rotated, revoked; ``keys_page``) and the audit log.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, abort, flash, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from offload import dead_letters
from offload.catalogue import RETIRE_OUTCOMES, Catalogue, retire
from offload.contracts.registered import RegisteredContract
from offload.errors import ClientError, DependencyError, NotFound, ValidationFailed
from offload.settings import Settings
from offload.status import JobRecord, JobState, iso
from offload.status.stats import state_counts
from offload_api import actions, audit, bulk, schedule_actions
from offload_api.admin import attempts, letters
from offload_api.admin import session as auth
from offload_api.collectors import read_queues
from offload_api.extension import services
from offload_api.views.jobs import TIME_FILTERS, job_filter_from_query, job_token
from offload_api.views.meta import catalogue_facts
from offload_api.views.queues import known_queue, pauses

bp = Blueprint("admin", __name__, url_prefix=auth.ADMIN_PATH, template_folder="templates", static_folder="static")

F = TypeVar("F", bound=Callable[..., Any])

#: A dead letter's body digest (:func:`offload.dead_letters.digest`), as the drop form posts it.
DIGEST = re.compile(r"[0-9a-f]{64}")

#: Where a sign-in may send the browser next: a path of the admin page in printable ASCII (a
#: ``Location`` header cannot hold a line break; werkzeug refused one with a 500), with no ``//``
#: or backslash a browser could read as another host (issue 29, item 5).
NEXT = re.compile(r"(?!.*(//|\\))/admin/[!-~]*")

#: The job list's filters (query parameters), which a bulk operation started from it takes too.
JOB_FILTERS = ("state", "type", "tenant", "error_code", "tag", *TIME_FILTERS)

#: No inline script or style; forms post only here; the page cannot be framed.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def install(app: Flask, settings: Settings) -> None:
    """Add the admin pages to ``app``."""
    auth.configure(app, settings)
    app.register_blueprint(bp)


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.context_processor
def _template_globals() -> dict[str, Any]:
    return {"csrf_token": auth.csrf_token, "iso": iso}


def admin_only(view: F) -> F:
    """Pages for a signed-in admin; others go to the sign-in page (GET) or get 403 (POST)."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if not auth.signed_in():
            if request.method != "GET":
                abort(403)
            return redirect(url_for("admin.login", next=request.path))
        if request.method == "POST":
            auth.check_csrf(request.form.get("csrf_token"))
            g.audit_actor = f"admin page, {audit.describe(auth.session_grant())}"
        return view(*args, **kwargs)

    return guarded  # type: ignore[return-value]


@bp.route("/login", methods=["GET", "POST"])
def login() -> str | BaseResponse | tuple[str, int, dict[str, str]]:
    """Sign in with an admin API key, within the limits of ``offload_api.admin.attempts``."""
    error = None
    if request.method == "POST":
        auth.check_csrf(request.form.get("csrf_token"))
        attempt = attempts.Attempt(request.remote_addr or "unknown", request.form.get("key", ""))
        wait = attempts.wait(attempt)
        if wait:
            attempts.refused(attempt, wait)
            error = f"Too many failed sign-ins; try again in {wait} s."
            return render_template("admin/login.html", error=error), 429, {"Retry-After": str(wait)}
        if auth.sign_in(attempt.key):
            attempts.succeeded(attempt)
            audit.admin_action("admin.sign_in", by=f"admin page, {audit.describe(auth.session_grant())}")
            target = request.args.get("next", "")
            return redirect(target if NEXT.fullmatch(target) else url_for("admin.queues"))
        attempts.failed(attempt)
        audit.admin_action("admin.sign_in", outcome="refused: not an admin key", by="admin page, signing in")
        error = "That is not an admin API key."
    return render_template("admin/login.html", error=error)


@bp.post("/logout")
@admin_only
def logout() -> BaseResponse:
    """End the session: its cookie, wherever it was saved, opens nothing again."""
    auth.sign_out()
    return redirect(url_for("admin.login"))


@bp.get("/")
@admin_only
def queues() -> str:
    """Every queue's depth, delayed and dead messages and consumers; jobs by state."""
    found = services()
    depths = read_queues(found.settings.broker_url.get_secret_value(), found.registry.queues)
    counts = state_counts(found.store)
    switches = pauses(found)
    paused = switches.paused()
    parked = {name: switches.parked_count(name) for name in {*found.registry.queues, *paused}}
    return render_template("admin/queues.html", depths=depths, counts=counts, paused=paused, parked=parked)


@bp.post("/queues/<name>/<action>")
@admin_only
def switch_queue(name: str, action: str) -> BaseResponse:
    """Pause or resume a queue (see ``offload.status.pauses``).

    Paused, workers stop starting its jobs and submissions go on; resumed, its parked jobs start
    again, oldest first.
    """
    if name not in services().registry.queues or action not in ("pause", "resume"):
        abort(404)
    if action == "pause":
        pauses().pause(name)
        flash(f"Paused {name}: its jobs are kept and start when it is resumed.")
    else:
        pauses().resume(name)
        flash(f"Resumed {name}.")
    audit.admin_action(f"queue.{action}", name)
    return redirect(url_for("admin.queues"))


@bp.get("/jobs")
@admin_only
def jobs() -> str | BaseResponse:
    """Find jobs: by id (straight to its page), or by state, type, tenant, error code and time ranges, newest first."""
    job_id = request.args.get("id", "").strip()
    if job_id:
        return redirect(url_for("admin.job", job_id=job_id))
    filters = {name: request.args.get(name, "") for name in JOB_FILTERS}
    try:
        where = job_filter_from_query(tenant=filters["tenant"] or None, scope=None)
        page = services().store.queries.search(where, limit=50, cursor=request.args.get("cursor"))
    except (ValueError, ValidationFailed):
        flash("That filter or page is not valid (times are ISO 8601 with an offset, e.g. 2026-01-31T12:00Z).")
        return redirect(url_for("admin.jobs"))
    return render_template(
        "admin/jobs.html",
        page=page,
        states=[s.value for s in JobState],
        types=services().registry.names,
        filters=filters,
        times={name: name.replace("_", " ") for name in TIME_FILTERS},
        max_jobs=bulk.MAX_JOBS,
    )


@bp.post("/operations")
@admin_only
def start_operation() -> BaseResponse:
    """Retry, cancel or delete every job the job list's filter matches, as a bulk operation (``offload_api.bulk``)."""
    action = request.form.get("action", "")
    described = {name: request.form[name] for name in JOB_FILTERS if request.form.get(name)}
    if action not in bulk.ACTIONS:
        abort(400)
    try:
        where = job_filter_from_query(tenant=described.get("tenant"), scope=None, args=described)
        operation_id = bulk.create(services(), action, where, described)
    except ValidationFailed as exc:
        flash(exc.message)
        back: dict[str, Any] = dict(described)
        return redirect(url_for("admin.jobs", **back))
    return redirect(url_for("admin.operation", operation_id=operation_id))


@bp.get("/operations/<operation_id>")
@admin_only
def operation(operation_id: str) -> str:
    """A bulk operation's progress (resumed here if its API process stopped, as the API's read does)."""
    return render_template("admin/operation.html", operation=bulk.follow(services(), operation_id, tenant=None))


def _events_url(record: JobRecord) -> str:
    """The job's event stream for the page's script: a browser token of the job, after what the page shows.

    The page follows it (``static/admin.js``) instead of polling, and reloads when the job's state
    changes; a stream that fails for good (the token expired) reloads the page too, with a new one.
    """
    token = job_token(record.id, record.tenant, services().settings.browser_token_ttl)["token"]
    return f"/v1/jobs/{record.id}/events?{urlencode({'token': token, 'last_event_id': record.seq})}"


def _record(job_id: str) -> Any:
    record = services().store.queries.get(job_id)
    if record is None:
        raise NotFound(f"Job {job_id[:64]!r} does not exist (or its record has expired).")
    return record


@bp.get("/jobs/<job_id>")
@admin_only
def job(job_id: str) -> str:
    """A job: state, progress, attempts, error, result, payload, history and log (refreshed while it runs)."""
    record = _record(job_id)
    history = services().store.queries.history(job_id)
    return render_template(
        "admin/job.html",
        job=record.public(),
        events_url=None if record.state.terminal else _events_url(record),
        history=history,
        logs=services().store.queries.logs(job_id),
        pretty=lambda value: json.dumps(value, indent=2, ensure_ascii=False),
    )


@bp.post("/jobs/<job_id>/retry")
@admin_only
def retry(job_id: str) -> BaseResponse:
    """Queue a failed, dead or cancelled job again."""
    _record(job_id)
    try:
        actions.retry(services(), job_id, scope=None)
        flash("Queued again.")
        audit.admin_action("job.retry", job_id)
    except (ClientError, DependencyError) as exc:
        flash(exc.message)
        audit.admin_action("job.retry", job_id, f"refused: {exc.code}")
    return redirect(url_for("admin.job", job_id=job_id))


@bp.post("/jobs/<job_id>/cancel")
@admin_only
def cancel(job_id: str) -> BaseResponse:
    """Cancel a waiting job, or ask a running one to stop."""
    _record(job_id)
    outcome, final = services().store.lifecycle.cancel(job_id, tenant=None)
    audit.admin_action("job.cancel", job_id, f"refused: already {final}" if outcome == "final" else "ok")
    flash(f"The job already ended ({final})." if outcome == "final" else "Cancel requested.")
    return redirect(url_for("admin.job", job_id=job_id))


@bp.get("/dead-letters")
@admin_only
def dead() -> str:
    """Dead letters per queue; the chosen queue's a page at a time, with their reasons counted."""
    found = services()
    url = found.settings.broker_url.get_secret_value()
    depths = read_queues(url, found.registry.queues)
    chosen = request.args.get("queue")
    page = None
    if chosen:
        page = letters.load(url, found.store, known_queue(chosen), letters.page_number(request.args.get("page")))
    return render_template("admin/dead_letters.html", depths=depths, chosen=chosen, page=page)


def _back_to_dead(queue: str) -> BaseResponse:
    return redirect(url_for("admin.dead", queue=queue, page=letters.page_number(request.form.get("page"))))


@bp.post("/dead-letters/<queue>/requeue")
@admin_only
def requeue(queue: str) -> BaseResponse:
    """Run a dead letter (``job_id`` given), those of one ``reason`` or all of ``queue``'s again, as retries.

    Malformed letters are left in place (they name no job and no worker could read them) and
    counted, so that one of them never holds the others back. The API's requeue is the same code
    (:func:`offload_api.actions.requeue_letter`, :func:`offload_api.admin.letters.requeue`).
    """
    found = services()
    url = found.settings.broker_url.get_secret_value()
    one = request.form.get("job_id")
    handle = functools.partial(actions.requeue_letter, found)
    if one:
        taken = dead_letters.take_one(url, known_queue(queue), one, handle)
        audit.admin_action("dead_letters.requeue", f"{queue} job {one[:64]}", "ok" if taken else "not_found")
        flash(f"Requeued the dead letter of job {one[:8]}." if taken else "That dead letter is no longer there.")
        return _back_to_dead(queue)
    reason = request.form.get("reason") or None
    outcome = letters.requeue(url, found.store, known_queue(queue), letters.LetterFilter(reason=reason), handle)
    audit.admin_action("dead_letters.requeue", f"{queue} reason {reason or 'any'}", f"requeued {outcome.requeued}")
    left = f" Skipped {outcome.malformed} malformed one(s), left in place: they can only be purged."
    which = f" with reason {reason[:64]}" if reason else ""
    flash(f"Requeued {outcome.requeued} dead letter(s) of {queue}{which}.{left if outcome.malformed else ''}")
    return redirect(url_for("admin.dead", queue=queue))


@bp.post("/dead-letters/<queue>/drop")
@admin_only
def drop(queue: str) -> BaseResponse:
    """Delete one dead letter of ``queue``, named by its body's digest (a malformed one has no other name)."""
    body_digest = request.form.get("digest", "")
    if not DIGEST.fullmatch(body_digest):
        abort(400)
    dropped = dead_letters.drop(services().settings.broker_url.get_secret_value(), known_queue(queue), body_digest)
    audit.admin_action("dead_letters.drop", f"{queue} {body_digest}", "ok" if dropped else "not_found")
    flash("Purged that dead letter." if dropped else "That dead letter is no longer there.")
    return _back_to_dead(queue)


@bp.post("/dead-letters/<queue>/purge")
@admin_only
def purge(queue: str) -> BaseResponse:
    """Delete every dead letter of ``queue``, once its name is typed as confirmation."""
    if request.form.get("confirm") != known_queue(queue):
        flash(f"Type the queue name ({queue}) to confirm the purge.")
        return redirect(url_for("admin.dead", queue=queue))
    count = dead_letters.purge(services().settings.broker_url.get_secret_value(), queue)
    audit.admin_action("dead_letters.purge", queue, f"purged {count}")
    flash(f"Purged {count} dead letter(s) of {queue}.")
    return redirect(url_for("admin.dead", queue=queue))


@bp.get("/batches")
@admin_only
def batches() -> str | BaseResponse:
    """The newest batches with their progress; ``?id=`` opens one."""
    found = services()
    wanted = request.args.get("id", "").strip()
    if wanted:
        batch = found.batches.get(wanted, tenant=None)
        if batch is None:
            flash(f"No batch {wanted[:64]!r} (or it has expired).")
            return redirect(url_for("admin.batches"))
        return render_template("admin/batch.html", batch=batch)
    rows = [b for b in (found.batches.get(batch_id, tenant=None) for batch_id in found.batches.recent()) if b]
    return render_template("admin/batches.html", batches=rows)


@bp.get("/schedules")
@admin_only
def schedules() -> str:
    """The shipped schedules and every tenant's, with their next and last runs."""
    items = schedule_actions.listing(services(), scope=None)
    return render_template("admin/schedules.html", items=items)


@bp.post("/schedules/<schedule_id>/<action>")
@admin_only
def act_on_schedule(schedule_id: str, action: str) -> BaseResponse:
    """Pause, resume, run now or delete a tenant's schedule (the shipped ones are read-only: 403)."""
    if action not in ("pause", "resume", "run", "delete"):
        abort(404)
    found = services()
    stored = schedule_actions.find(found, schedule_id, scope=None)
    try:
        if action == "run":
            job_id = schedule_actions.run_now(found, stored).job_id
            flash(f"Ran {schedule_id} now as job {job_id}.")
        elif action == "delete":
            schedule_actions.delete(found, stored)
            flash(f"Deleted {schedule_id}; the jobs it ran stay.")
        else:
            schedule_actions.switch(found, stored, paused=action == "pause")
            flash(f"{'Paused' if action == 'pause' else 'Resumed'} {schedule_id}.")
    except (ClientError, DependencyError) as exc:
        flash(exc.message)
    return redirect(url_for("admin.schedules"))


@bp.get("/job-types")
@admin_only
def job_types() -> str:
    """Every job type clients may submit: its queue, the service that registered it and its live workers."""
    registry = services().registry
    public = registry.public
    cards, live = catalogue_facts(registry, [contract.name for contract in public])
    rows = []
    for contract in public:
        card = cards.get(contract.name)
        rows.append(
            {
                "name": contract.name,
                "queue": contract.queue,
                "description": contract.description,
                "service": (card or {}).get("service"),
                "schema_hash": (card or {}).get("schema_hash"),
                "live": live.get(contract.name) if live is not None else None,
                "checked_by": "JSON Schema" if isinstance(contract, RegisteredContract) else "model",
                "retirable": isinstance(contract, RegisteredContract),
            }
        )
    return render_template("admin/job_types.html", rows=rows)


@bp.post("/job-types/<name>/retire")
@admin_only
def retire_type(name: str) -> BaseResponse:
    """Retire a registered type whose workers have stopped: new jobs of it are refused; queued ones stay."""
    registry = services().registry
    if not isinstance(registry, Catalogue):
        abort(404)
    outcome = retire(registry.store, name)
    audit.admin_action("job_type.retire", name, outcome)
    registry.refresh(force=True)
    flash(RETIRE_OUTCOMES[outcome].format(name=name))
    return redirect(url_for("admin.job_types"))
