"""Admin sign-in: an admin API key exchanged for a session cookie, and CSRF tokens for every form.

The cookie is Flask's signed session (``HttpOnly``, ``SameSite=Lax``, ``Secure`` when the public
URL is https), keyed from ``OFFLOAD_SIGNING_KEY``. It holds the SHA-256 of the key, never the key,
and every request checks that digest against the configured keys again, so removing a key from
``OFFLOAD_API_KEYS`` ends its sessions at once. Forms carry a per-session token that a POST must
echo (reliability-security.md §7.10 row 57).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from flask import Flask, Request, session
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

from offload.errors import ClientError
from offload.settings import Settings
from offload_api.extension import services

#: How long a sign-in lasts.
SESSION_LIFETIME = timedelta(hours=8)


class CsrfFailed(ClientError):
    """A state-changing form came without this session's token."""

    code = "csrf_failed"
    status = 403


#: Where sessions live: the admin page's routes and its cookie's ``Path``.
ADMIN_PATH = "/admin"


class AdminOnlySessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, opened only for the admin page's paths.

    Flask opens the session of every request, and building the cookie's signing serializer took
    about 7 % of the API's CPU on each ``/v1`` request, which never has a session (its cookie's
    path is ``/admin``). Elsewhere Flask gets its null session: read as empty, refused if written.
    """

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path != ADMIN_PATH and not request.path.startswith(ADMIN_PATH + "/"):
            return None
        return super().open_session(app, request)


def configure(app: Flask, settings: Settings) -> None:
    """Session cookie settings and the key that signs it (derived, so it is not the links' key)."""
    app.session_interface = AdminOnlySessions()
    secret = settings.signing_key.get_secret_value().encode()
    app.secret_key = hmac.new(secret, b"offload-admin-session", hashlib.sha256).hexdigest()
    app.config.update(
        SESSION_COOKIE_NAME="offload_admin",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        SESSION_COOKIE_PATH=ADMIN_PATH,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
    )


def sign_in(key: str) -> bool:
    """Start a session for ``key`` if it is a configured admin key."""
    digest = hashlib.sha256(key.encode()).digest()
    grant = services().keys.get(digest)
    if grant is None or grant.role != "admin":
        return False
    session.clear()
    session.permanent = True
    session["key"] = digest.hex()
    session["csrf"] = secrets.token_urlsafe(24)
    return True


def signed_in() -> bool:
    """True while the session's key is still a configured admin key."""
    digest = session.get("key")
    if not isinstance(digest, str):
        return False
    grant = services().keys.get(bytes.fromhex(digest))
    return grant is not None and grant.role == "admin"


def csrf_token() -> str:
    """This session's form token (made on first use, also before sign-in for the login form)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(24)
    return token


def check_csrf(sent: str | None) -> None:
    """Refuse a form whose token is not this session's.

    Raises:
        CsrfFailed: missing or wrong token.
    """
    expected = session.get("csrf")
    if not isinstance(expected, str) or not sent or not hmac.compare_digest(expected, sent):
        raise CsrfFailed("The form's security token is missing or stale; reload the page and try again.")
