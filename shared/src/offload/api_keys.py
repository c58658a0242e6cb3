"""Managed API keys, the parts without Redis: what a new key may say, its secret, what it grants.

A managed key (issue 23) is made over ``POST /v1/keys``, the admin page or ``offload keys create``
and kept in Redis by :class:`offload.status.api_keys.ApiKeyStore`, which stores only the SHA-256 of
its secret. The secret is ``ofk_`` and 43 URL-safe characters (256 random bits): recognisable in a
leaked log or a secret scanner, and shown once, when the key is made or rotated.

A :class:`Grant` is what the API checks a request against: an ``OFFLOAD_API_KEYS`` key's grant
(tenant and role) with, for a managed key, its id, its name, the job types it may submit and
until when it is valid.
"""

from __future__ import annotations

import fnmatch
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from offload.settings import ApiKey, Role

#: What every managed key's secret begins with.
SECRET_PREFIX = "ofk_"
#: A tenant's name, as ``OFFLOAD_API_KEYS`` allows it.
TENANT_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: A scope: a job-type name or a glob of them (``email.*``).
SCOPE_PATTERN = r"^[A-Za-z0-9_.*?\[\]-]{1,200}$"
#: The default time a rotated key's old secret keeps working (seconds).
DEFAULT_OVERLAP = 24 * 3600
#: The longest overlap a rotation may ask for (seconds): 30 days.
MAX_OVERLAP = 30 * 24 * 3600


class ApiKeyRequest(BaseModel):
    """A new managed key: who it acts for, what it may do, until when."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$", description="What it is for.")
    tenant: str = Field(pattern=TENANT_PATTERN, description="The tenant it acts for.")
    role: Role = Field(default="client", description="reader, client or admin (as OFFLOAD_API_KEYS roles).")
    scopes: list[Annotated[str, Field(pattern=SCOPE_PATTERN)]] | None = Field(
        default=None,
        max_length=50,
        description="Job types (or globs, `email.*`) it may submit; null: every type its role allows.",
    )
    expires_at: AwareDatetime | None = Field(default=None, description="When it stops working; null: never.")

    @field_validator("expires_at")
    @classmethod
    def _in_the_future(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.timestamp() <= time.time():
            raise ValueError("must be in the future")
        return value


def new_secret() -> str:
    """A fresh secret: :data:`SECRET_PREFIX` and 256 random bits."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    """A fresh key id (``key_`` and 64 random bits): it names a key, and opens nothing."""
    return "key_" + secrets.token_hex(8)


def digest(secret: str) -> bytes:
    """The SHA-256 of a secret: all that is stored of it, and what a request's key is looked up by."""
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True)
class Grant(ApiKey):
    """What one secret grants: tenant and role, and for a managed key its id, name, scopes and end.

    ``key_id`` None is an ``OFFLOAD_API_KEYS`` key (it cannot be revoked over the API).
    """

    key_id: str | None = None
    name: str = "env key"
    #: The job-type globs it may submit; None: any.
    scopes: tuple[str, ...] | None = None
    #: When it stops working (UNIX seconds: the key's expiry, or a rotated secret's overlap end).
    valid_until: float | None = None

    def valid_at(self, now: float) -> bool:
        """True while this secret works at ``now`` (UNIX seconds)."""
        return self.valid_until is None or now < self.valid_until

    def may_submit(self, job_type: str) -> bool:
        """True if the key's scopes allow submitting jobs of ``job_type``."""
        return self.scopes is None or any(fnmatch.fnmatchcase(job_type, glob) for glob in self.scopes)


def env_grants(keys: dict[str, ApiKey]) -> dict[bytes, Grant]:
    """``OFFLOAD_API_KEYS``'s keys by digest, as grants with no id (they never expire nor get revoked)."""
    return {digest(secret): Grant(key.tenant, key.role) for secret, key in keys.items()}


def to_ms(moment: datetime | None) -> int | None:
    """A time as UNIX milliseconds (None stays None)."""
    return None if moment is None else int(moment.timestamp() * 1000)
