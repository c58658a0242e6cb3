"""API-key authentication: ``Authorization: Bearer <key>`` maps to a tenant and a role.

Roles: ``reader`` reads its tenant's jobs; ``client`` also submits, cancels and retries them;
``admin`` does all that for every tenant. A key is only ever read from the header (never the
query string, which ends up in logs); every failure looks the same to the caller.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import g, request

from offload.api_keys import Grant
from offload.errors import Forbidden, StatusStoreUnavailable, TooManyBadKeys, Unauthorized
from offload.settings import ApiKey
from offload.status.guards import BadKeys
from offload_api.extension import services

F = TypeVar("F", bound=Callable[..., Any])

_RANK = {"reader": 0, "client": 1, "admin": 2}


#: Invalid keys one client address may send per minute; beyond it the answer is 429, not 401
#: (reliability-security.md §7.1 row 8). Counted only when a key fails, so valid requests cost nothing.
#: Failed admin sign-ins count too (``offload_api.admin.attempts``).
MAX_BAD_KEYS_PER_MINUTE = 50


@dataclass(frozen=True)
class Caller:
    """Who is calling: their tenant and role, and the key they called with (for scopes and the audit log)."""

    tenant: str
    role: str
    #: The grant of the key (its id, name and scopes; an ``OFFLOAD_API_KEYS`` key has no id).
    grant: Grant | None = None

    @property
    def is_admin(self) -> bool:
        """True for admin keys, which see every tenant."""
        return self.role == "admin"

    @property
    def scope(self) -> str | None:
        """The tenant whose jobs this caller may see (None: all)."""
        return None if self.is_admin else self.tenant


def hash_keys(keys: dict[str, ApiKey]) -> dict[bytes, ApiKey]:
    """Index keys by their SHA-256 so lookups compare digests, not secrets."""
    return {hashlib.sha256(secret.encode()).digest(): grant for secret, grant in keys.items()}


def grant_for(header: str, keys: dict[bytes, ApiKey]) -> ApiKey | None:
    """The grant of an ``Authorization`` header's bearer key, or None (no bearer key, an unknown one)."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    return keys.get(hashlib.sha256(token.encode()).digest())


def authenticate() -> Caller:
    """The caller of the current request.

    Raises:
        Unauthorized: no bearer key, or an unknown one.
    """
    found = services()
    grant = grant_for(request.headers.get("Authorization", ""), found.keys)
    checked = found.key_ring.check(grant) if found.key_ring is not None else grant
    if checked is None:  # unknown, revoked and expired keys all look the same
        _count_bad_key()
        raise Unauthorized("A valid API key is required: send 'Authorization: Bearer <key>'.")
    return Caller(checked.tenant, checked.role, checked if isinstance(checked, Grant) else None)


def check_scope(*documents: object) -> None:
    """Refuse a submission of a job type the caller's key is not scoped to.

    ``documents`` are job documents (``{"type": ...}``) or lists of them, as the body carries them
    (before validation: what is not a job document is left to the validation's 422).

    Raises:
        Forbidden: a type outside the key's scopes (the answer names it in ``job_type``).
    """
    grant = caller().grant
    if grant is None or grant.scopes is None:
        return
    jobs = [item for found in documents for item in (found if isinstance(found, list) else [found])]
    for job_type in (job["type"] for job in jobs if isinstance(job, dict) and isinstance(job.get("type"), str)):
        if not grant.may_submit(job_type):
            raise Forbidden(
                f"This API key may not submit jobs of type {job_type[:200]!r} (its scopes: {', '.join(grant.scopes)}).",
                code="job_type_not_in_scope",
                job_type=job_type[:200],
            )


def _count_bad_key() -> None:
    """Count a failed key check of this client address in the current minute.

    Raises:
        TooManyBadKeys: over :data:`MAX_BAD_KEYS_PER_MINUTE`.
    """
    wait = count_bad_key(request.remote_addr or "unknown")
    if wait:
        raise TooManyBadKeys("Too many invalid API keys from this address; wait before trying again.", retry_after=wait)


def count_bad_key(address: str, *, count: bool = True) -> int:
    """Count a failed key check of ``address`` in the current minute (with ``count`` False, only look).

    Returns:
        The seconds ``address`` must wait before its keys are checked again: until the minute ends
        once it sent over :data:`MAX_BAD_KEYS_PER_MINUTE`, else 0 (also when Redis is down: the
        answer stays 401, never a 500).
    """
    now = time.time()
    try:
        failures = BadKeys(services().store).count(address, int(now // 60), add=count)
    except StatusStoreUnavailable:
        return 0
    return 60 - int(now) % 60 if failures > MAX_BAD_KEYS_PER_MINUTE else 0


def requires(role: str) -> Callable[[F], F]:
    """Decorate a view so that it runs only for callers with at least ``role``; sets ``g.caller``."""

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            caller = authenticate()
            if _RANK.get(caller.role, -1) < _RANK[role]:
                raise Forbidden(f"This API key's role ({caller.role}) may not do this; it needs {role}.")
            g.caller = caller
            return view(*args, **kwargs)

        guarded.required_role = role  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return decorate


def caller() -> Caller:
    """The authenticated caller of the current request (set by :func:`requires`)."""
    found: Caller = g.caller
    return found
