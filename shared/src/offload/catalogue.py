"""The live catalogue: the job types a process may submit, as workers registered them.

A :class:`Catalogue` is a :class:`~offload.contracts.Registry` that follows what workers
registered in Redis (:mod:`offload.status.catalogue`). It holds the contracts the process can
import (the built-in ones: validated with their full pydantic models) and, beside them, every
registered type it cannot import, rebuilt from its card and validated with its JSON Schema
(:class:`~offload.contracts.registered.RegisteredContract`).

It reads Redis at most once a second, and then one ``GET`` of the catalogue's version; only a
changed version reads the cards again. A request never waits on Redis for the catalogue, and
while Redis is unreachable the last view stays in force.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from offload.contracts import BUILT_IN, JobContract, Registry
from offload.contracts.registered import RegisteredContract, policy_of
from offload.errors import StatusStoreUnavailable
from offload.status.catalogue import ContractStore

logger = logging.getLogger(__name__)

#: Seconds between two looks at the catalogue's version.
REFRESH_S = 1.0
#: Seconds before looking again after Redis could not be read.
FAILED_REFRESH_S = 5.0


class Catalogue(Registry):
    """The contracts this process knows, plus those workers registered, refreshed at most every second.

    Args:
        store: the catalogue's keys in Redis.
        local: the contracts this process imports (they win over a card of the same name).
        refresh_s: the least time between two looks at Redis.
    """

    def __init__(
        self, store: ContractStore, local: Iterable[JobContract] = BUILT_IN, *, refresh_s: float = REFRESH_S
    ) -> None:
        super().__init__(local)
        self.store = store
        self._local = dict(self._contracts)
        self._refresh_s = refresh_s
        self._next_look = float("-inf")
        self._version = -1
        self._cards: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._warned = False

    def _table(self) -> dict[str, JobContract]:
        if time.monotonic() >= self._next_look:
            self.refresh()
        return self._contracts

    @property
    def version(self) -> int:
        """The catalogue version this view reflects (``-1`` before Redis was first read)."""
        self._table()
        return self._version

    def card(self, name: str) -> dict[str, Any] | None:
        """The card registered for ``name``, or ``None`` (a local type no worker registered yet)."""
        self._table()
        return self._cards.get(name)

    def refresh(self, *, force: bool = False) -> None:
        """Look at the catalogue's version now and reload the cards if it changed.

        Only one thread looks at a time; the others keep the view they have.
        """
        if not self._lock.acquire(blocking=force):
            return
        try:
            self._next_look = time.monotonic() + self._refresh_s
            try:
                if not force and self.store.version() == self._version:
                    return
                version, cards = self.store.cards()
            except StatusStoreUnavailable:
                # A Redis that is down costs at most one failed look every FAILED_REFRESH_S per process.
                self._next_look = time.monotonic() + FAILED_REFRESH_S
                if not self._warned:
                    logger.warning("Redis is unreachable: the job-type catalogue keeps its last view.")
                    self._warned = True
                return
            self._warned = False
            self._install(version, cards)
        finally:
            self._lock.release()

    def _install(self, version: int, cards: dict[str, dict[str, Any]]) -> None:
        table = dict(self._local)
        for name, found in sorted(cards.items()):
            try:
                if name in table:
                    if "policy" not in found:
                        continue
                    # The serving worker's settings decide the policy of a type this process imports too.
                    table[name] = replace(table[name], policy=policy_of(found))
                else:
                    table[name] = RegisteredContract.from_card(found)
            except ValueError as exc:
                logger.error("Job type %r left out of the catalogue: %s", name[:100], exc)
        self._cards = cards
        self._contracts = table
        self._version = version


#: What each outcome of :func:`retire` tells the person who asked (``{name}``: the type).
RETIRE_OUTCOMES = {
    "retired": "Retired {name!r}: new jobs of it are refused; queued ones stay.",
    "unknown": "No job type {name!r} is registered.",
    "built_in": "{name!r} is built into Offload; it cannot be retired.",
    "live": "Workers still serve {name!r}: stop them first.",
}


def retire(store: ContractStore, name: str, *, force: bool = False) -> str:
    """Remove a registered type from the catalogue: new jobs of it are refused within a second or two.

    Jobs already queued stay where they are (a worker of the type may still serve them). A type
    that live workers serve is kept unless ``force``: they would register it again on their next
    start, so retiring means stopping them first.

    Returns:
        ``"retired"``, ``"unknown"`` (nothing registered by that name), ``"built_in"`` (a type of
        the library itself, which every process imports), or ``"live"`` (workers serve it); each
        explained in :data:`RETIRE_OUTCOMES`.

    Raises:
        StatusStoreUnavailable: Redis is unreachable.
    """
    if name in BUILT_IN:
        return "built_in"
    if not force and store.live_workers([name]).get(name, 0) > 0:
        return "live"
    return "retired" if store.retire(name) else "unknown"
