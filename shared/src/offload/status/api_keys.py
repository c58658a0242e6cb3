"""Managed API keys in Redis: made, listed, rotated and revoked; read whole by each API process.

Each key is one hash (``apikey:<id>``) listed in a sorted set by creation (``apikeys``); only the
SHA-256 of a secret is stored, never the secret. Every change bumps ``apikeys:version``: an API
process reads that counter at most once a second and reloads the keys only when it moved
(``offload_api.key_ring``), so a request never waits on Redis for its key.

A rotation keeps the old secret's digest beside the new one until ``previous_until``; a
revocation stamps ``revoked_at`` and keeps the record :data:`REVOKED_KEPT` seconds for the
listing and the audit log, after which it expires and the listing forgets its id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import redis

from offload.api_keys import ApiKeyRequest, Grant, digest, new_key_id, new_secret, to_ms
from offload.errors import InvalidState
from offload.settings import Role
from offload.status.records import iso
from offload.status.scripts import now_ms, redis_errors

if TYPE_CHECKING:
    from offload.status.store import StatusStore

#: Seconds a revoked key's record is kept (listed as revoked) before it expires: 90 days.
REVOKED_KEPT = 90 * 86_400
#: Most managed keys one deployment may hold (every API process keeps them all in memory).
MAX_KEYS = 10_000


@dataclass(frozen=True)
class StoredKey:
    """One managed key as stored: its grant, its times, and the digests of its working secrets."""

    id: str
    name: str
    tenant: str
    role: Role
    scopes: tuple[str, ...] | None
    created_at: int
    created_by: str
    expires_at: int | None = None
    last_used_at: int | None = None
    revoked_at: int | None = None
    rotated_at: int | None = None
    #: The digest (hex) of the current secret.
    digest: str = ""
    #: The digest (hex) of the secret before the last rotation, valid until :attr:`previous_until`.
    previous_digest: str = ""
    previous_until: int | None = None

    def public(self) -> dict[str, Any]:
        """The key as the API and the admin page show it: never a secret nor a digest."""
        overlap = self.previous_until if self.previous_until and self.previous_until > now_ms() else None
        return {
            "id": self.id,
            "name": self.name,
            "tenant": self.tenant,
            "role": self.role,
            "scopes": list(self.scopes) if self.scopes is not None else None,
            "expires_at": iso(self.expires_at),
            "created_at": iso(self.created_at),
            "created_by": self.created_by,
            "last_used_at": iso(self.last_used_at),
            "rotated_at": iso(self.rotated_at),
            "previous_secret_valid_until": iso(overlap),
            "revoked_at": iso(self.revoked_at),
        }

    def grants(self) -> dict[bytes, Grant]:
        """What each of its working secrets grants, by digest (nothing once revoked)."""
        if self.revoked_at is not None:
            return {}

        def grant(until_ms: int | None) -> Grant:
            ends = [moment for moment in (self.expires_at, until_ms) if moment is not None]
            return Grant(
                self.tenant,
                self.role,
                key_id=self.id,
                name=self.name,
                scopes=self.scopes,
                valid_until=min(ends) / 1000 if ends else None,
            )

        found = {bytes.fromhex(self.digest): grant(None)}
        if self.previous_digest and self.previous_until is not None:
            found[bytes.fromhex(self.previous_digest)] = grant(self.previous_until)
        return found

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> StoredKey:
        """Read one key's hash."""

        def number(name: str) -> int | None:
            value = raw.get(name)
            return int(value) if value else None

        scopes = json.loads(raw["scopes"]) if raw.get("scopes") else None
        return cls(
            id=raw["id"],
            name=raw["name"],
            tenant=raw["tenant"],
            role=cast(Role, raw["role"]),
            scopes=tuple(scopes) if scopes is not None else None,
            created_at=int(raw["created_at"]),
            created_by=raw.get("created_by", ""),
            expires_at=number("expires_at"),
            last_used_at=number("last_used_at"),
            revoked_at=number("revoked_at"),
            rotated_at=number("rotated_at"),
            digest=raw["digest"],
            previous_digest=raw.get("previous_digest", ""),
            previous_until=number("previous_until"),
        )


class ApiKeyStore:
    """The managed API keys: the one place they are written, and read whole for the API's key ring.

    Args:
        store: the status store whose Redis client and key names it uses.
    """

    def __init__(self, store: StatusStore) -> None:
        self.client = store.client
        self.keys = store.keys

    def create(self, request: ApiKeyRequest, *, by: str) -> tuple[StoredKey, str]:
        """Make a key; returns it and its secret, which is not stored and never shown again.

        Raises:
            InvalidState: the deployment already holds :data:`MAX_KEYS` keys.
            StatusStoreUnavailable: Redis is unavailable.
        """
        secret, created = new_secret(), now_ms()
        key = StoredKey(
            id=new_key_id(),
            name=request.name,
            tenant=request.tenant,
            role=request.role,
            scopes=tuple(request.scopes) if request.scopes is not None else None,
            created_at=created,
            created_by=by[:200],
            expires_at=to_ms(request.expires_at),
            digest=digest(secret).hex(),
        )
        fields = {
            "id": key.id,
            "name": key.name,
            "tenant": key.tenant,
            "role": key.role,
            "scopes": json.dumps(list(key.scopes)) if key.scopes is not None else "",
            "created_at": str(created),
            "created_by": key.created_by,
            "expires_at": str(key.expires_at or ""),
            "digest": key.digest,
        }
        with redis_errors():
            if int(self.client.zcard(self.keys.api_keys)) >= MAX_KEYS:
                raise InvalidState(f"This deployment already holds {MAX_KEYS} managed keys; revoke some first.")
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(self.keys.api_key(key.id), mapping=cast(Any, fields))
            pipe.zadd(self.keys.api_keys, {key.id: created})
            pipe.incr(self.keys.api_keys_version)
            pipe.execute()
        return key, secret

    def get(self, key_id: str) -> StoredKey | None:
        """One key, or None (never made, or revoked long enough ago to have expired).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        if len(key_id) > 64:
            return None
        with redis_errors():
            raw = cast(dict[str, str], self.client.hgetall(self.keys.api_key(key_id)))
        return StoredKey.from_hash(raw) if raw else None

    def all(self) -> list[StoredKey]:
        """Every key, newest first (revoked ones too, until their record expires).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        return self._read(reverse=True)[1]

    def snapshot(self) -> tuple[int, list[StoredKey]]:
        """The version and every key, the version read first: a change in between is seen next time.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        return self._read(reverse=False)

    def version(self) -> int:
        """The keys' version: it changes whenever a key is made, rotated or revoked.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            return int(cast(Any, self.client.get(self.keys.api_keys_version)) or 0)

    def rotate(self, key_id: str, *, overlap_seconds: int) -> tuple[StoredKey, str] | None:
        """Give a key a new secret; the old one keeps working ``overlap_seconds`` (None: no such key).

        A secret still in an earlier overlap stops at once: at most two secrets work at a time.

        Raises:
            InvalidState: the key is revoked.
            StatusStoreUnavailable: Redis is unavailable.
        """
        secret = new_secret()

        def change(pipe: redis.client.Pipeline) -> StoredKey | None:
            raw = cast(dict[str, str], pipe.hgetall(self.keys.api_key(key_id)))
            if not raw:
                return None
            found = StoredKey.from_hash(raw)
            if found.revoked_at is not None:
                raise InvalidState(f"Key {key_id} is revoked; make a new one instead.")
            now = now_ms()
            fields = {
                "digest": digest(secret).hex(),
                "previous_digest": found.digest,
                "previous_until": str(now + overlap_seconds * 1000),
                "rotated_at": str(now),
            }
            pipe.multi()
            pipe.hset(self.keys.api_key(key_id), mapping=cast(Any, fields))
            pipe.incr(self.keys.api_keys_version)
            return StoredKey.from_hash({**raw, **fields})

        rotated = self._transaction(key_id, change)
        return None if rotated is None else (rotated, secret)

    def revoke(self, key_id: str) -> StoredKey | None:
        """Stop a key for good (again: no change); None: no such key.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """

        def change(pipe: redis.client.Pipeline) -> StoredKey | None:
            raw = cast(dict[str, str], pipe.hgetall(self.keys.api_key(key_id)))
            if not raw or raw.get("revoked_at"):
                return StoredKey.from_hash(raw) if raw else None
            revoked = str(now_ms())
            pipe.multi()
            pipe.hset(self.keys.api_key(key_id), "revoked_at", revoked)
            pipe.expire(self.keys.api_key(key_id), REVOKED_KEPT)
            pipe.incr(self.keys.api_keys_version)
            return StoredKey.from_hash({**raw, "revoked_at": revoked})

        return self._transaction(key_id, change)

    def touch(self, used: dict[str, int]) -> None:
        """Record when keys were last used (key id → ms), in one round trip; gone keys are skipped.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        if not used:
            return
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            for key_id in used:
                pipe.exists(self.keys.api_key(key_id))
            alive = pipe.execute()
            for (key_id, moment), exists in zip(used.items(), alive, strict=True):
                if exists:
                    pipe.hset(self.keys.api_key(key_id), "last_used_at", str(moment))
            pipe.execute()

    def _transaction(self, key_id: str, change: Any) -> StoredKey | None:
        if len(key_id) > 64:
            return None
        outcome: list[StoredKey | None] = []

        def run(pipe: redis.client.Pipeline) -> None:
            outcome[:] = [change(pipe)]

        with redis_errors():
            self.client.transaction(run, self.keys.api_key(key_id))
        return outcome[0] if outcome else None

    def _read(self, *, reverse: bool) -> tuple[int, list[StoredKey]]:
        with redis_errors():
            version = int(cast(Any, self.client.get(self.keys.api_keys_version)) or 0)
            ids = cast(list[str], self.client.zrange(self.keys.api_keys, 0, MAX_KEYS - 1, desc=reverse))
            pipe = self.client.pipeline(transaction=False)
            for key_id in ids:
                pipe.hgetall(self.keys.api_key(key_id))
            raws = cast(list[dict[str, str]], pipe.execute())
            gone = [key_id for key_id, raw in zip(ids, raws, strict=True) if not raw]
            if gone:
                self.client.zrem(self.keys.api_keys, *gone)
        return version, [StoredKey.from_hash(raw) for raw in raws if raw]


def grant_table(keys: Iterable[StoredKey]) -> dict[bytes, Grant]:
    """Every working secret of ``keys`` by digest (revoked keys give none)."""
    table: dict[bytes, Grant] = {}
    for key in keys:
        table.update(key.grants())
    return table
