"""Signed, expiring download links for stored files (reliability-security.md §7.9).

A link is ``/v1/files/<key>?expires=<unix seconds>&sig=<signature>``; the signature is an HMAC
(itsdangerous, which ships with Flask) over the key and the expiry, so changing either breaks it.
Checks are constant time; an expired link and a tampered one get different answers (410, 403).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from urllib.parse import quote

from itsdangerous import Signer

from offload.errors import InvalidSignature, LinkExpired
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
