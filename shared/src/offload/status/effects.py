"""What makes a job's side effects happen at most once across redeliveries, kept in Redis.

- A **marker** per job and kind of effect (``effect:<kind>:<job_id>``): "sending" just before an
  email's data goes to the server, "sent" after; a redelivered job that finds one does not send
  again.
- A **journal** per job and kind (``effect:<kind>:<job_id>``, a hash): each item's outcome of a
  batch, so a retried batch resumes where it stopped.
- A **flag** with a lifetime per tenant and webhook endpoint (``webhook-gone:<tenant>:<url hash>``): the
  endpoint answered 410 Gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from redis.typing import EncodableT, FieldT

if TYPE_CHECKING:
    from offload.status.store import StatusStore


class Effects:
    """Markers, journals and flags of side effects (every method may raise ``redis.RedisError``)."""

    def __init__(self, store: StatusStore) -> None:
        self.client = store.client
        self.keys = store.keys

    def marker(self, kind: str, job_id: str) -> str | None:
        """The job's marker for ``kind`` (None if it has none)."""
        found = self.client.get(self.keys.effect(kind, job_id))
        return str(found) if found is not None else None

    def mark(self, kind: str, job_id: str, value: str, *, ttl_s: int) -> None:
        """Set the job's marker for ``kind`` for ``ttl_s`` seconds."""
        self.client.set(self.keys.effect(kind, job_id), value, ex=ttl_s)

    def unmark(self, kind: str, job_id: str) -> None:
        """Remove the job's marker for ``kind`` (the effect did not happen)."""
        self.client.delete(self.keys.effect(kind, job_id))

    def journal(self, kind: str, job_id: str) -> dict[str, str]:
        """Every entry of the job's journal for ``kind``, by item."""
        return cast(dict[str, str], self.client.hgetall(self.keys.effect(kind, job_id)))

    def write(self, kind: str, job_id: str, entries: Mapping[str, str], *, ttl_s: int | None = None) -> None:
        """Add ``entries`` to the job's journal in one command (and keep it ``ttl_s`` seconds, if given)."""
        key = self.keys.effect(kind, job_id)
        if entries:
            self.client.hset(key, mapping=cast(dict[FieldT, EncodableT], dict(entries)))
        if ttl_s is not None:
            self.client.expire(key, ttl_s)

    def erase(self, kind: str, job_id: str, item: str) -> None:
        """Drop one item from the job's journal (its effect must happen again)."""
        self.client.hdel(self.keys.effect(kind, job_id), item)

    def endpoint_gone(self, tenant: str, url: str) -> bool:
        """Whether the tenant's webhook endpoint ``url`` answered 410 Gone within its flag's lifetime."""
        return bool(self.client.exists(self.keys.webhook_gone(tenant, url)))

    def flag_endpoint_gone(self, tenant: str, url: str, *, ttl_s: int) -> None:
        """Remember for ``ttl_s`` seconds that the tenant's webhook endpoint ``url`` answered 410 Gone."""
        self.client.set(self.keys.webhook_gone(tenant, url), "1", ex=ttl_s)
