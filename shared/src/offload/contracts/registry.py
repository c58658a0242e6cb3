"""A set of job contracts looked up by name: what a worker serves, or what a process may submit."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from offload.contracts._base import JobContract
from offload.errors import UnknownJobType


class Registry:
    """An immutable, ordered set of contracts, looked up by type name (an allow-list, never ``getattr``).

    Raises:
        ValueError: at construction, when two contracts share a name.
    """

    def __init__(self, contracts: Iterable[JobContract]) -> None:
        self._contracts: dict[str, JobContract] = {}
        for contract in contracts:
            if contract.name in self._contracts:
                raise ValueError(f"Job type {contract.name!r} is registered twice.")
            self._contracts[contract.name] = contract

    def _table(self) -> dict[str, JobContract]:
        """The contracts by name, as of now (a live view overrides this)."""
        return self._contracts

    def get(self, name: object, *, internal: bool = True) -> JobContract:
        """The contract named ``name``; with ``internal=False`` (client submissions) internal ones are unknown.

        Raises:
            UnknownJobType: no contract has that name (or it is internal and not allowed).
        """
        contract = self._table().get(name) if isinstance(name, str) else None
        if contract is not None and contract.internal and not internal:
            contract = None
        if contract is None:
            shown = name if isinstance(name, str) and len(name) <= 100 else "(invalid)"
            raise UnknownJobType(f"Unknown job type {shown!r}. See GET /v1/job-types for the list.", field="type")
        return contract

    def __contains__(self, name: object) -> bool:
        """True if a contract is named ``name``; False for anything that is not a string (a JSON object, say)."""
        return isinstance(name, str) and name in self._table()

    def __iter__(self) -> Iterator[JobContract]:
        return iter(list(self._table().values()))

    def __len__(self) -> int:
        return len(self._table())

    @property
    def names(self) -> list[str]:
        """Every type name, in registration order."""
        return list(self._table())

    @property
    def public(self) -> list[JobContract]:
        """The contracts clients may submit (all but the internal ones)."""
        return [contract for contract in self if not contract.internal]

    @property
    def queues(self) -> list[str]:
        """Every queue some contract routes to, sorted."""
        return sorted({contract.queue for contract in self})

    def for_queues(self, queues: Iterable[str]) -> list[JobContract]:
        """The contracts routed to any of ``queues`` (what one worker must serve)."""
        wanted = set(queues)
        return [contract for contract in self if contract.queue in wanted]
