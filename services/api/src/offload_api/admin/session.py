"""Admin sign-in: an admin API key exchanged for a server-side session, and CSRF tokens for every form.

A session lives in Redis (under the store's ``admin-session:<id>`` key) and expires there: a
signed-in one :data:`SESSION_LIFETIME` after sign-in, one that has only served the sign-in form
:data:`FORM_LIFETIME` after it was made. The cookie (``HttpOnly``, ``SameSite=Lax``, ``Secure``
when the public URL is https) holds only the session's id, 256 random bits that say nothing about
the key: the signed Flask cookie it replaces held the unsalted SHA-256 of the admin key, readable
by anyone who saw the cookie and open to offline guessing, and stayed valid after sign-out for its
8 hours (issue 29, items 3 and 4). Now signing out deletes the session, so its cookie opens
nothing; signing in replaces the session's id (no fixation); and every request checks that the
session's key is still a configured admin key, deleting it at once if the key was removed from
``OFFLOAD_API_KEYS``. The session names its key by an HMAC under a key derived from
``OFFLOAD_SIGNING_KEY``, so not even a copy of Redis offers the key's hash to guess against.
Forms carry a per-session token that a POST must echo (reliability-security.md §7.10 row 57).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, Request, current_app, session
from flask.sessions import SessionInterface, SessionMixin, session_json_serializer
from werkzeug.datastructures import CallbackDict
from werkzeug.wrappers import Response

from offload.errors import CsrfFailed, StatusStoreUnavailable
from offload.settings import ApiKey, Settings
from offload.status import StatusStore
from offload.status.guards import AdminSessions
from offload_api.extension import services, services_of

logger = logging.getLogger(__name__)

#: How long a sign-in lasts (from the sign-in, however active the session is).
SESSION_LIFETIME = timedelta(hours=8)
#: How long a session that is not signed in lasts: the time to fill in the sign-in form.
FORM_LIFETIME = timedelta(minutes=30)
#: What a session id looks like (``secrets.token_urlsafe(32)``); any other cookie is ignored.
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")

#: Where sessions live: the admin page's routes and its cookie's ``Path``.
ADMIN_PATH = "/admin"


class AdminSession(CallbackDict[str, Any], SessionMixin):
    """A session's data, with its id (None until it is first saved) and the ids it replaced.

    Args:
        initial: the data read from Redis.
        sid: the id it was read under (None: a new session).
        expires_at: when its record expires (UNIX seconds), for the cookie's ``Expires``.
    """

    modified = False

    def __init__(
        self, initial: dict[str, Any] | None = None, *, sid: str | None = None, expires_at: float | None = None
    ) -> None:
        def on_update(self: AdminSession) -> None:
            self.modified = True

        super().__init__(initial, on_update)
        self.sid = sid
        self.expires_at = expires_at
        #: Ids whose records are deleted when the response is saved (signed out, or replaced).
        self.retired: list[str] = []
        #: True when Redis could not be read: nothing is signed in and nothing is saved.
        self.unavailable = False

    def end(self) -> None:
        """Forget this session: its record is deleted when the response is saved, with the cookie."""
        if self.sid is not None:
            self.retired.append(self.sid)
        self.sid = None
        self.expires_at = None
        self.clear()


class RedisSessions(SessionInterface):
    """Sessions of the admin page, kept in Redis; other paths get Flask's null session.

    Flask opens the session of every request; a ``/v1`` request never has one (its cookie's path
    is ``/admin``), so none is looked up for it.

    Args:
        secret: the key of the HMAC that names a session's API key.
    """

    serializer = session_json_serializer

    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def key_id(self, digest: bytes) -> str:
        """How a session names the API key whose SHA-256 is ``digest``."""
        return hmac.new(self.secret, digest, hashlib.sha256).hexdigest()

    def open_session(self, app: Flask, request: Request) -> AdminSession | None:
        """The session the request's cookie names, or a new empty one (never one the client chose)."""
        if request.path != ADMIN_PATH and not request.path.startswith(ADMIN_PATH + "/"):
            return None
        sid = request.cookies.get(self.get_cookie_name(app), "")
        if not SESSION_ID.fullmatch(sid):
            return AdminSession()
        try:
            raw, ttl_ms = AdminSessions(_store(app)).read(sid)
        except StatusStoreUnavailable:
            found = AdminSession()
            found.unavailable = True
            return found
        if not raw or ttl_ms <= 0:
            return AdminSession()
        return AdminSession(self.serializer.loads(raw), sid=sid, expires_at=time.time() + ttl_ms / 1000)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Write a changed session to Redis and its id to the cookie; delete ended ones, and their cookie."""
        if not isinstance(session, AdminSession) or session.unavailable:
            return
        sessions = AdminSessions(_store(app))
        try:
            if session.retired:
                sessions.delete(*session.retired)
            if session and session.modified:
                self._write(sessions, session)
        except StatusStoreUnavailable:
            # The page is already rendered: it goes out without a session, whose forms are then refused.
            logger.error("Could not save an admin session: Redis is unavailable.")
            return
        name, path, domain = self.get_cookie_name(app), self.get_cookie_path(app), self.get_cookie_domain(app)
        secure, samesite = self.get_cookie_secure(app), self.get_cookie_samesite(app)
        if session.sid is None:
            if session.retired:
                response.delete_cookie(name, path, domain, secure, True, samesite)
                response.vary.add("Cookie")
            return
        if session.modified:
            expires = datetime.fromtimestamp(session.expires_at or time.time(), UTC)
            response.set_cookie(
                name,
                session.sid,
                expires=expires,
                path=path,
                domain=domain,
                secure=secure,
                httponly=True,
                samesite=samesite,
            )
            response.vary.add("Cookie")

    def _write(self, sessions: AdminSessions, session: AdminSession) -> None:
        """Save ``session``: a new one under a new id for its lifetime, a known one within its own."""
        data = self.serializer.dumps(dict(session))
        if session.sid is not None:  # one that expired meanwhile stays gone
            sessions.update(session.sid, data)
            return
        lifetime = SESSION_LIFETIME if "key" in session else FORM_LIFETIME
        session.sid = secrets.token_urlsafe(32)
        session.expires_at = time.time() + lifetime.total_seconds()
        sessions.create(session.sid, data, lifetime)


def _store(app: Flask) -> StatusStore:
    found = services_of(app)
    assert found is not None, "the admin pages run only in Offload's app"
    return found.store


def _interface() -> RedisSessions:
    interface = current_app.session_interface
    assert isinstance(interface, RedisSessions)
    return interface


def _session() -> AdminSession:
    """This request's admin session.

    Raises:
        StatusStoreUnavailable: Redis could not be read, so nobody can be signed in (503).
    """
    current = session._get_current_object()  # type: ignore[attr-defined]
    assert isinstance(current, AdminSession)
    if current.unavailable:
        raise StatusStoreUnavailable("The session store (Redis) is unavailable.")
    return current


def configure(app: Flask, settings: Settings) -> None:
    """Session cookie settings and the key that names sessions' keys (derived, so it is not the links' key)."""
    secret = hmac.new(settings.signing_key.get_secret_value().encode(), b"offload-admin-session", hashlib.sha256)
    app.session_interface = RedisSessions(secret.digest())
    app.config.update(
        SESSION_COOKIE_NAME="offload_admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        SESSION_COOKIE_PATH=ADMIN_PATH,
    )


def sign_in(key: str) -> bool:
    """Start a new session (under a new id) for ``key`` if it is a configured admin key."""
    digest = hashlib.sha256(key.encode()).digest()
    found = services()
    grant = found.keys.get(digest)
    if found.key_ring is not None:
        grant = found.key_ring.check(grant)  # a revoked or expired managed key signs nobody in
    if grant is None or grant.role != "admin":
        return False
    current = _session()
    current.end()
    current["key"] = _interface().key_id(digest)
    current["csrf"] = secrets.token_urlsafe(24)
    return True


def sign_out() -> None:
    """End the session: its record is deleted, so its cookie, saved anywhere, opens nothing again."""
    _session().end()


def signed_in() -> bool:
    """True while the session's key is still a configured admin key; a session whose key is gone is ended."""
    if not isinstance(_session().get("key"), str):
        return False
    if session_grant() is not None:
        return True
    _session().end()
    return False


def session_grant() -> ApiKey | None:
    """The grant of the admin key this session signed in with, while it is still a working admin key."""
    key_id = _session().get("key")
    if not isinstance(key_id, str):
        return None
    interface, found = _interface(), services()
    for digest, grant in list(found.keys.items()):
        if grant.role == "admin" and hmac.compare_digest(key_id, interface.key_id(digest)):
            return found.key_ring.check(grant) if found.key_ring is not None else grant
    return None


def csrf_token() -> str:
    """This session's form token (made on first use, also before sign-in for the login form)."""
    current = _session()
    token = current.get("csrf")
    if not isinstance(token, str):
        token = current["csrf"] = secrets.token_urlsafe(24)
    return token


def check_csrf(sent: str | None) -> None:
    """Refuse a form whose token is not this session's.

    Raises:
        CsrfFailed: missing or wrong token.
    """
    expected = _session().get("csrf")
    if not isinstance(expected, str) or not sent or not hmac.compare_digest(expected, sent):
        raise CsrfFailed("The form's security token is missing or stale; reload the page and try again.")
