"""The shapes of the managed API keys and the audit log (issue 23), for the OpenAPI document.

The request body is :class:`offload.api_keys.ApiKeyRequest` (the CLI validates with it too); the
response models only describe the answers, as ``schemas.py``'s do.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from offload.api_keys import ApiKeyRequest


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApiKeyInfo(_Closed):
    """A managed API key as listed: never its secret."""

    id: str
    name: str
    tenant: str
    role: Literal["reader", "client", "admin"]
    scopes: list[str] | None = Field(description="Job types (globs) it may submit; null: any.")
    expires_at: str | None
    created_at: str
    created_by: str = Field(description="Who made it (an audit log actor).")
    last_used_at: str | None = Field(description="When it was last used (written within seconds, in batches).")
    rotated_at: str | None
    previous_secret_valid_until: str | None = Field(description="Until when the secret before the rotation works.")
    revoked_at: str | None


class ApiKeyCreated(ApiKeyInfo):
    """A key just made or rotated, with its secret: shown this once, never stored."""

    secret: str = Field(description="The key to send as `Authorization: Bearer <secret>`; not shown again.")


class ApiKeyList(_Closed):
    """Every managed key, newest first (revoked ones for 90 days)."""

    keys: list[ApiKeyInfo]
    env_keys: int = Field(description="Keys from OFFLOAD_API_KEYS also accepted (not listed; not revocable here).")


class AuditEntryInfo(_Closed):
    """One admin action."""

    id: str = Field(description="Its position in the log (a cursor).")
    at: str | None
    actor: str = Field(description="Who: `key <id> (<name>)`, `env key of <tenant>`, `admin page, ...`, `cli`.")
    action: str = Field(description="What, e.g. `key.create`, `queue.pause`, `admin.sign_in`.")
    target: str
    outcome: str = Field(description="`ok`, or what happened instead.")
    address: str = Field(description="The client address it came from.")


class AuditPage(_Closed):
    """A page of the audit log, newest first."""

    entries: list[AuditEntryInfo]
    next_cursor: str | None


RESPONSES: tuple[type[BaseModel], ...] = (ApiKeyInfo, ApiKeyCreated, ApiKeyList, AuditPage)
REQUESTS: tuple[type[BaseModel], ...] = (ApiKeyRequest,)
