"""Who may publish jobs on the wire, as whom: RabbitMQ users mapped to tenants and job types.

A message published straight to RabbitMQ carries the AMQP ``user_id`` property, which RabbitMQ
itself checks equals the login of the connection that published it. That login, not anything in
the message's body, says who published it. ``OFFLOAD_WIRE_PUBLISHERS`` maps each publishing
service's broker user to the tenants it may act for (the first is its default) and the job types
it may submit (fnmatch globs; all that clients may submit when left out)::

    {"orders-service": {"tenants": ["acme"], "job_types": ["email.*", "report.build"]}}

Offload's own processes (the API, workers, scheduler) publish as the user of their
``OFFLOAD_BROKER_URL``, plus any in ``OFFLOAD_WIRE_TRUSTED_USERS``: they are *trusted*, which
lets their messages run jobs that already have a record (retries, resumes, wake-ups republish
stored messages). Every other user's message goes through adoption (``offload.worker.adoption``).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

#: What a tenant name may be, as in ``OFFLOAD_API_KEYS``.
TENANT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: What a job-type glob may be: a type name's characters and ``*?[]``.
_TYPE_GLOB = re.compile(r"^[A-Za-z0-9_.*?\[\]!-]{1,100}$")


@dataclass(frozen=True)
class WireGrant:
    """What one broker user may publish: for which tenants (the first is its own) and which job types."""

    tenants: tuple[str, ...]
    job_types: tuple[str, ...] | None = None

    @property
    def home(self) -> str:
        """The publisher's own tenant: a job that names none is its, and its refusals are recorded under it."""
        return self.tenants[0]

    def allows_type(self, job_type: str) -> bool:
        """Whether this publisher may submit ``job_type`` (Offload's internal types are refused anyway)."""
        return self.job_types is None or any(fnmatch.fnmatchcase(job_type, glob) for glob in self.job_types)


@dataclass(frozen=True)
class WireAccess:
    """The broker users Offload trusts (its own) and the grants of every publishing service."""

    trusted: frozenset[str]
    grants: Mapping[str, WireGrant]

    @classmethod
    def of(cls, broker_url: str, trusted_users: Iterable[str], grants: Mapping[str, WireGrant]) -> WireAccess:
        """The access rules of a deployment: its own broker user and ``trusted_users`` are trusted."""
        own = login_of(broker_url)
        return cls(frozenset({*trusted_users, *([own] if own else [])}), dict(grants))

    def is_trusted(self, user: str | None) -> bool:
        """Whether ``user`` is one of Offload's own processes."""
        return user is not None and user in self.trusted

    def grant(self, user: str | None) -> WireGrant | None:
        """What ``user`` may publish; None for a message without a ``user_id`` or from an unmapped user."""
        return None if user is None else self.grants.get(user)


def login_of(url: str) -> str | None:
    """The user name an AMQP URL logs in as (``guest`` when the URL names none, as pika does)."""
    parts = urlsplit(url)
    return unquote(parts.username) if parts.username else "guest"


def parse_grants(raw: Any) -> dict[str, WireGrant]:
    """``OFFLOAD_WIRE_PUBLISHERS`` (a JSON object, or the decoded dict) as grants by broker user.

    Raises:
        ValueError: the value is not the documented shape; the message says where and why.
    """
    if isinstance(raw, str):
        if not raw.strip():
            return {}
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(raw, dict):
        raise ValueError('expected a JSON object {"<broker user>": {"tenants": [...], "job_types": [...]}}')
    return {str(user): _grant(str(user), entry) for user, entry in raw.items()}


def _grant(user: str, entry: Any) -> WireGrant:
    if isinstance(entry, WireGrant):
        return entry
    where = f"user {user!r}"
    if not user or len(user) > 255:
        raise ValueError("a broker user name must be 1-255 characters")
    if not isinstance(entry, dict):
        raise ValueError(f'{where}: expected an object {{"tenants": [...], "job_types": [...]}}')
    unknown = set(entry) - {"tenants", "job_types"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: tenants, job_types)")
    tenants = entry.get("tenants")
    if not isinstance(tenants, list | tuple) or not tenants:
        raise ValueError(f"{where}: 'tenants' must be a non-empty list of tenant names")
    for tenant in tenants:
        if not isinstance(tenant, str) or not TENANT.match(tenant):
            raise ValueError(f"{where}: tenant {tenant!r} is not 1-64 letters, digits, _ or -")
    types = entry.get("job_types")
    if types is not None:
        if not isinstance(types, list | tuple) or not types:
            raise ValueError(f"{where}: 'job_types' must be a non-empty list of job types or globs (or left out)")
        for glob in types:
            if not isinstance(glob, str) or not _TYPE_GLOB.match(glob):
                raise ValueError(f"{where}: job type {glob!r} is not a job type name or glob such as 'email.*'")
    return WireGrant(tuple(dict.fromkeys(tenants)), tuple(types) if types is not None else None)
