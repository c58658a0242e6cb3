"""Recording admin actions in the audit log (:mod:`offload.status.audit`): who, what, when, from where.

Every admin action calls :func:`admin_action` once it is done (or refused), from the API's routes
and the admin page alike. Who is the API key (``key <id> (<name>)``, or ``env key of <tenant>``
for an ``OFFLOAD_API_KEYS`` key), or the admin page's signed-in session (``admin page, <key>``, set
by the page's guard in ``g.audit_actor``);
where is the client address. A tenant's own actions (a client key cancelling its job) are not
admin actions and are not recorded.

Recording is best effort: the action has happened when it is recorded, so a Redis that fails at
that moment is logged (as an error, without the entry's details) and does not turn a done action
into an error answer.
"""

from __future__ import annotations

import logging

from flask import g, has_request_context, request

from offload.api_keys import Grant
from offload.errors import StatusStoreUnavailable
from offload.settings import ApiKey
from offload.status.audit import AuditEntry
from offload_api.extension import services

logger = logging.getLogger(__name__)


def describe(grant: ApiKey | None) -> str:
    """How the audit log names the key of ``grant``."""
    if isinstance(grant, Grant) and grant.key_id is not None:
        return f"key {grant.key_id} ({grant.name})"
    return f"env key of {grant.tenant}" if grant is not None else "unknown"


def actor() -> str | None:
    """Who is acting in this request, if an admin; None for a tenant acting on its own."""
    page_actor = g.get("audit_actor")  # set by the admin page's guard
    if isinstance(page_actor, str):
        return page_actor
    caller = g.get("caller")
    if caller is None or not caller.is_admin:
        return None
    return describe(caller.grant or ApiKey(caller.tenant, "admin"))


def admin_action(action: str, target: str = "", outcome: str = "ok", *, by: str | None = None) -> None:
    """Record ``action`` on ``target`` with its ``outcome``, if this request is an admin's.

    ``by`` overrides who (a sign-in names the key tried, before any session holds it).
    """
    if not has_request_context():
        return
    who = by or actor()
    log = services().audit
    if who is None or log is None:
        return
    entry = AuditEntry(who, action, target, outcome, request.remote_addr or "unknown")
    try:
        log.record(entry)
    except StatusStoreUnavailable:
        logger.error("Could not record an admin action (%s) in the audit log: Redis is unavailable.", action)
