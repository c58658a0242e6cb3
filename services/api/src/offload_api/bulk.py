"""Bulk operations: retry, cancel or delete the jobs a filter matches, in the background, followed by id.

The jobs are matched when the operation is created (at most :data:`MAX_JOBS`; more is refused)
and their ids kept in Redis with the operation (:mod:`offload.status.operations`). A thread of the
API process that created it works through them a chunk at a time, holding a lease it renews
after each chunk. Everything it needs is in Redis, so nothing is lost with the process: if it
dies (a restart, a deploy), the lease lapses and the next ``GET /v1/operations/{id}``, on any API
process, resumes the operation from its last chunk. A thread was chosen over a job on a worker
because the retry path (reopen, then publish with confirms) is the API's own
(:func:`offload_api.actions.retry`), and because no worker queue could then hold the operation
back behind the jobs it is about to retry.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter

from offload.errors import BrokerUnavailable, DependencyError, InvalidState, NotFound, ValidationFailed
from offload.status.filters import JobFilter
from offload.status.operations import OperationRecord, Operations
from offload_api import actions
from offload_api.audit import admin_action
from offload_api.extension import Services

logger = logging.getLogger(__name__)

#: The most jobs one operation may act on; a filter matching more is refused (narrow it).
MAX_JOBS = 10_000
#: Jobs acted on between two saves of the progress.
CHUNK = 100
#: How long a runner's lease lasts without a chunk done (a runner that died is taken over after it).
LEASE_MS = 30_000

#: The actions, by name: each applies to one job and says whether it did (``done``) or not (``skipped``).
ACTIONS = ("retry", "cancel", "delete")


def operations(found: Services) -> Operations:
    """The operations' records, on the status store's Redis."""
    return Operations(found.store)


def create(found: Services, action: str, where: JobFilter, described: dict[str, str]) -> str:
    """Match the jobs, record the operation and start running it; returns its id.

    Raises:
        ValidationFailed: the filter matches more than :data:`MAX_JOBS` jobs.
        StatusStoreUnavailable: Redis is unavailable.
    """
    ids = found.store.queries.matching_ids(where, limit=MAX_JOBS + 1)
    if len(ids) > MAX_JOBS:
        raise ValidationFailed(
            f"The filter matches more than {MAX_JOBS} jobs, the most one operation may act on; narrow it.",
            code="too_many_jobs",
        )
    operation_id = str(uuid.uuid4())
    operations(found).create(operation_id, action=action, tenant=where.tenant, described=described, job_ids=ids)
    filters = " ".join(f"{name}={value}" for name, value in sorted(described.items()))
    admin_action(f"bulk.{action}", operation_id, f"ok: {len(ids)} job(s) matched {filters}".rstrip())
    resume(found, operation_id)
    return operation_id


def resume(found: Services, operation_id: str) -> bool:
    """Run the operation in a thread of this process unless a live process runs it; True if started here.

    Raises:
        StatusStoreUnavailable: Redis is unavailable.
    """
    if not operations(found).claim(operation_id, lease_ms=LEASE_MS):
        return False
    threading.Thread(target=_run, args=(found, operation_id), name=f"operation-{operation_id[:8]}", daemon=True).start()
    return True


def follow(found: Services, operation_id: str, *, tenant: str | None) -> OperationRecord:
    """The operation as it stands (``tenant``'s only, unless None), resumed here if no live process runs it.

    Raises:
        NotFound: no such operation (or another tenant's, or expired).
        StatusStoreUnavailable: Redis is unavailable.
    """
    record = operations(found).get(operation_id[:64], tenant=tenant)
    if record is None:
        raise NotFound(f"Operation {operation_id[:64]!r} does not exist (or has expired).")
    if record.state == "running":
        resume(found, record.id)
    return record


def _run(found: Services, operation_id: str) -> None:
    """Act on the operation's jobs from its position on, a chunk at a time, then end it."""
    store = operations(found)
    try:
        record = store.get(operation_id)
        if record is None:
            return
        position = record.position
        while ids := store.next_jobs(operation_id, position, CHUNK):
            counts = Counter(_apply(found, record.action, job_id, record.tenant) for job_id in ids)
            position += len(ids)
            store.advance(
                operation_id,
                done=counts["done"],
                skipped=counts["skipped"],
                failed=counts["failed"],
                to=position,
                lease_ms=LEASE_MS,
            )
        store.finish(operation_id)
    except DependencyError as exc:  # Redis went away: the lease lapses and a later read resumes it
        logger.warning("Operation %s paused: %s", operation_id, exc.message)
    except Exception:
        logger.exception("Operation %s failed.", operation_id)
        try:
            store.finish(operation_id, error="The operation stopped on an unexpected error; see the API's log.")
        except DependencyError:
            pass


def _apply(found: Services, action: str, job_id: str, tenant: str | None) -> str:
    """Apply ``action`` to one job: ``done``, ``skipped`` (it no longer applies) or ``failed``."""
    lifecycle = found.store.lifecycle
    if action == "retry":
        try:
            actions.retry(found, job_id, scope=tenant)
        except InvalidState:
            return "skipped"
        except BrokerUnavailable:
            return "failed"
        return "done"
    if action == "cancel":
        outcome, _ = lifecycle.cancel(job_id, tenant=tenant)
        return "done" if outcome in ("cancelled", "requested") else "skipped"
    outcome, _ = lifecycle.delete(job_id, tenant=tenant)
    return "done" if outcome == "deleted" else "skipped"
