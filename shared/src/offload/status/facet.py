"""What every facet of the status store shares: the Redis client, the key names, the scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from offload.status.states import JobState

if TYPE_CHECKING:
    from offload.status.store import StatusStore


class Facet:
    """One part of :class:`~offload.status.store.StatusStore`'s surface, over the store's connection.

    A facet reaches its siblings through :attr:`store` (a listing's trim asks the janitor).
    """

    def __init__(self, store: StatusStore) -> None:
        self.store = store
        self.client = store.client
        self.keys = store.keys
        self.retention = store.retention

    def _indexes(self, owner: str, job_type: str | None, state: JobState | None) -> list[str]:
        """The index keys a listing of ``owner`` (a tenant or ``_all``) merges."""
        types = [job_type] if job_type else sorted(cast(set[str], self.client.smembers(self.keys.types(owner))))
        states = [state] if state else list(JobState)
        return [self.keys.index(owner, name, s) for name in types for s in states]

    def _run(self, name: str, job_id: str, *args: str | int | float) -> Any:
        return self.store.scripts.run(name, job_id, *args)
