"""What makes a job's side effects happen at most once across redeliveries, kept in Redis.

- A **marker** per job and kind of effect (``effect:<kind>:<job_id>``): "sending" just before an
  email's data goes to the server, "sent" after; a redelivered job that finds one does not send
  again.
- A **journal** per job and kind (``effect:<kind>:<job_id>``, a hash): each item's outcome of a
  batch, so a retried batch resumes where it stopped.
- A **flag** with a lifetime (``<name>:<parts>``): a webhook endpoint that answered 410 Gone.
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
        self.key = store.key

    def marker(self, kind: str, job_id: str) -> str | None:
        """The job's marker for ``kind`` (None if it has none)."""
        found = self.client.get(self.key("effect", kind, job_id))
        return str(found) if found is not None else None

    def mark(self, kind: str, job_id: str, value: str, *, ttl_s: int) -> None:
        """Set the job's marker for ``kind`` for ``ttl_s`` seconds."""
        self.client.set(self.key("effect", kind, job_id), value, ex=ttl_s)

    def unmark(self, kind: str, job_id: str) -> None:
        """Remove the job's marker for ``kind`` (the effect did not happen)."""
        self.client.delete(self.key("effect", kind, job_id))

    def journal(self, kind: str, job_id: str) -> dict[str, str]:
        """Every entry of the job's journal for ``kind``, by item."""
        return cast(dict[str, str], self.client.hgetall(self.key("effect", kind, job_id)))

    def write(self, kind: str, job_id: str, entries: Mapping[str, str], *, ttl_s: int | None = None) -> None:
        """Add ``entries`` to the job's journal in one command (and keep it ``ttl_s`` seconds, if given)."""
        key = self.key("effect", kind, job_id)
        if entries:
            self.client.hset(key, mapping=cast(dict[FieldT, EncodableT], dict(entries)))
        if ttl_s is not None:
            self.client.expire(key, ttl_s)

    def erase(self, kind: str, job_id: str, item: str) -> None:
        """Drop one item from the job's journal (its effect must happen again)."""
        self.client.hdel(self.key("effect", kind, job_id), item)

    def flagged(self, name: str, *parts: str) -> bool:
        """Whether the flag ``name`` of ``parts`` is up."""
        return bool(self.client.exists(self.key(name, *parts)))

    def flag(self, name: str, *parts: str, ttl_s: int) -> None:
        """Raise the flag ``name`` of ``parts`` for ``ttl_s`` seconds."""
        self.client.set(self.key(name, *parts), "1", ex=ttl_s)
