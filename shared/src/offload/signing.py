"""Signed, expiring links: downloads of stored files, and read-only browser tokens for jobs.

A download link (reliability-security.md §7.9) is
``/v1/files/<key>?expires=<unix seconds>&sig=<signature>``; the signature is an HMAC (itsdangerous,
which ships with Flask) over the key and the expiry, so changing either breaks it.
Checks are constant time; an expired link and a tampered one get different answers (410, 403).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from urllib.parse import quote

from itsdangerous import BadSignature, Signer, URLSafeSerializer

from offload.errors import Forbidden, InvalidSignature, LinkExpired, Unauthorized
from offload.numbers import whole_number


@dataclass(frozen=True)
class LinkSigner:
    """Makes and checks download links.

    Args:
        secret: the key (``OFFLOAD_SIGNING_KEY``), shared by the API and the workers.
        default_ttl: seconds a link is valid when the maker does not say.
    """

    secret: str
    default_ttl: int = 7 * 86_400

    def _signer(self) -> Signer:
        return Signer(self.secret, salt="offload-files", digest_method=hashlib.sha256)

    def sign(self, key: str, *, ttl: int | None = None, now: float | None = None) -> tuple[int, str]:
        """The expiry and signature for ``key``."""
        expires = int((time.time() if now is None else now) + (ttl or self.default_ttl))
        signature = self._signer().get_signature(f"{key}|{expires}").decode()
        return expires, signature

    def path(self, key: str, *, ttl: int | None = None) -> str:
        """The download path (without host) for ``key``."""
        expires, signature = self.sign(key, ttl=ttl)
        return f"/v1/files/{quote(key)}?expires={expires}&sig={signature}"

    def verify(self, key: str, expires: str, signature: str, *, now: float | None = None) -> None:
        """Check a link.

        Raises:
            InvalidSignature: the signature does not match the key and expiry.
            LinkExpired: the signature matches but the link has expired.
        """
        expiry = whole_number(expires)
        if expiry is None or not self._signer().verify_signature(f"{key}|{expires}", signature):
            raise InvalidSignature("The download link is not valid.")
        if expiry < (time.time() if now is None else now):
            raise LinkExpired("The download link has expired.")


@dataclass(frozen=True)
class ReadToken:
    """What a browser token lets its holder read: one tenant's job, tag or whole change feed.

    ``scope`` is ``job:<id>`` (the job's status and events), ``tag:<tag>`` (``GET /v1/events``
    with that tag) or ``tenant`` (``GET /v1/events`` of the whole tenant); ``expires`` is in Unix
    seconds.
    """

    tenant: str
    scope: str
    expires: int

    def allows(self, scope: str) -> bool:
        """Whether this token opens ``scope`` (tokens open exactly their own scope; ``tenant`` every tag too)."""
        return self.scope == scope or (self.scope == "tenant" and scope.startswith("tag:"))


@dataclass(frozen=True)
class ReadTokens:
    """Makes and checks browser tokens (``?token=``): signed with ``OFFLOAD_SIGNING_KEY``, expiring, read-only.

    A browser's ``EventSource`` cannot send an ``Authorization`` header and a web page must never
    hold an API key: a client with a key asks for a token scoped as narrowly as the page needs and
    hands it to the page. The token is an HMAC-signed document (itsdangerous, salted apart from
    download links), so it needs no storage and cannot be widened or prolonged by its holder.

    Args:
        secret: the signing key.
    """

    secret: str

    def _serializer(self) -> URLSafeSerializer:
        signer = {"digest_method": hashlib.sha256}
        return URLSafeSerializer(self.secret, salt="offload-read-token", signer_kwargs=signer)

    def issue(self, tenant: str, scope: str, *, ttl: int, now: float | None = None) -> ReadToken:
        """A token for ``tenant``'s ``scope``, valid ``ttl`` seconds (see :meth:`encode`)."""
        return ReadToken(tenant, scope, int((time.time() if now is None else now) + ttl))

    def encode(self, token: ReadToken) -> str:
        """The token as the URL-safe string a page passes as ``?token=``."""
        return str(self._serializer().dumps([token.tenant, token.scope, token.expires]))

    def decode(self, raw: str, *, now: float | None = None) -> ReadToken:
        """Check a token's signature and expiry.

        Raises:
            Unauthorized: ``invalid_token`` (tampered, malformed, signed with another key) or
                ``token_expired``.
        """
        try:
            tenant, scope, expires = self._serializer().loads(raw[:1024])
            token = ReadToken(str(tenant), str(scope), int(expires))
        except (BadSignature, ValueError, TypeError):
            raise Unauthorized("The token is not valid.", code="invalid_token") from None
        if token.expires < (time.time() if now is None else now):
            raise Unauthorized("The token has expired; ask for a new one.", code="token_expired")
        return token

    def check(self, raw: str, scope: str) -> ReadToken:
        """A valid token that opens ``scope``.

        Raises:
            Unauthorized: the token is invalid or expired.
            Forbidden: ``token_scope``: the token is valid but for another job, tag or route.
        """
        token = self.decode(raw)
        if not token.allows(scope):
            raise Forbidden(f"This token is scoped to {token.scope!r}; it does not open this.", code="token_scope")
        return token
