"""The admin page's API keys and audit log: list, make (the secret shown once), rotate, revoke; read the log.

The same store and the same audit entries as ``/v1/keys`` and ``/v1/audit``. A new secret is put
in the page that answers the form, never in the session or a flash message (both are kept in
Redis): it is shown that once, and the page is not cached (``Cache-Control: no-store``). Since
that page answers a POST, reloading it would send the form again: each rendering of the page gives
its make and rotate forms a one-time token (kept in the session), so a form sent twice makes or
rotates nothing the second time.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import flash, redirect, render_template, request, session, url_for
from pydantic import ValidationError
from werkzeug.wrappers import Response as BaseResponse

from offload.api_keys import DEFAULT_OVERLAP, MAX_OVERLAP, ApiKeyRequest
from offload.errors import ClientError
from offload.numbers import whole_number
from offload.status.api_keys import ApiKeyStore
from offload_api import audit
from offload_api.admin.views import admin_only, bp
from offload_api.extension import services

#: Audit entries on one page of the admin page.
AUDIT_PAGE = 50
#: The session's one-time token of the keys page's forms.
_ONCE = "keys_form"


def _store() -> ApiKeyStore:
    return ApiKeyStore(services().store)


def _page(secret: dict[str, Any] | None = None, status: int = 200) -> tuple[str, int]:
    ring = services().key_ring
    keys = [key.public() for key in _store().all()]
    env = ring.env_count if ring is not None else 0
    session[_ONCE] = once = secrets.token_urlsafe(16)
    rendered = render_template(
        "admin/keys.html", keys=keys, env_keys=env, secret=secret, overlap=DEFAULT_OVERLAP, once=once
    )
    return rendered, status


def _sent_twice() -> bool:
    """True (with a message) when this form was already sent: a reload of the page that answered it."""
    expected = session.pop(_ONCE, None)
    if isinstance(expected, str) and hmac.compare_digest(expected, request.form.get("once", "")):
        return False
    flash("That form was already sent (the page was reloaded?); nothing was changed again.")
    return True


def _changed() -> None:
    ring = services().key_ring
    if ring is not None:
        ring.refresh(force=True)


@bp.get("/keys")
@admin_only
def keys() -> tuple[str, int]:
    """Every managed key, and the form to make one."""
    return _page()


@bp.post("/keys")
@admin_only
def create_key() -> tuple[str, int] | BaseResponse:
    """Make a key from the form; the answer shows its secret this once."""
    if _sent_twice():
        return redirect(url_for("admin.keys"))
    form = request.form
    scopes = [scope.strip() for scope in form.get("scopes", "").split(",") if scope.strip()]
    fields: dict[str, Any] = {
        "name": form.get("name", ""),
        "tenant": form.get("tenant", ""),
        "role": form.get("role", "client"),
        "scopes": scopes or None,
    }
    if form.get("expires_at"):
        fields["expires_at"] = form["expires_at"]
    try:
        wanted = ApiKeyRequest.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        flash(f"The key was not made: {problems}.")
        return redirect(url_for("admin.keys"))
    key, secret = _store().create(wanted, by=audit.actor() or "admin page")
    _changed()
    audit.admin_action("key.create", key.id, f"ok: {key.name} ({key.tenant}, {key.role})")
    return _page({"id": key.id, "name": key.name, "secret": secret, "made": "made"}, 201)


@bp.post("/keys/<key_id>/rotate")
@admin_only
def rotate_key(key_id: str) -> tuple[str, int] | BaseResponse:
    """A new secret for the key, shown this once; the old one works for the overlap asked."""
    if _sent_twice():
        return redirect(url_for("admin.keys"))
    overlap = whole_number(request.form.get("overlap_seconds", str(DEFAULT_OVERLAP)))
    if overlap is None or not 0 <= overlap <= MAX_OVERLAP:
        flash(f"The overlap must be from 0 to {MAX_OVERLAP} seconds.")
        return redirect(url_for("admin.keys"))
    try:
        rotated = _store().rotate(key_id, overlap_seconds=overlap)
    except ClientError as exc:
        flash(exc.message)
        return redirect(url_for("admin.keys"))
    if rotated is None:
        audit.admin_action("key.rotate", key_id[:64], "not_found")
        flash(f"No API key {key_id[:64]!r}.")
        return redirect(url_for("admin.keys"))
    _changed()
    audit.admin_action("key.rotate", key_id, f"ok: old secret works {overlap} s more")
    key, secret = rotated
    return _page({"id": key.id, "name": key.name, "secret": secret, "made": "rotated"})


@bp.post("/keys/<key_id>/revoke")
@admin_only
def revoke_key(key_id: str) -> BaseResponse:
    """Stop the key for good, on every API process within seconds."""
    revoked = _store().revoke(key_id)
    audit.admin_action("key.revoke", key_id[:64], f"ok: {revoked.name}" if revoked else "not_found")
    if revoked is not None:
        _changed()
    flash(f"Revoked {revoked.name} ({key_id})." if revoked else f"No API key {key_id[:64]!r}.")
    return redirect(url_for("admin.keys"))


@bp.get("/audit")
@admin_only
def audit_log() -> str:
    """The audit log, newest first, filtered by action; a page at a time."""
    log = services().audit
    assert log is not None, "the app always has an audit log"
    action = request.args.get("action", "").strip()[:100] or None
    try:
        entries, cursor = log.page(action=action, cursor=request.args.get("cursor") or None, limit=AUDIT_PAGE)
    except ValueError:
        entries, cursor = [], None
        flash("That page of the audit log is not valid.")
    return render_template("admin/audit.html", entries=[e.public() for e in entries], cursor=cursor, action=action)
