"""A worker's place in the catalogue: its contracts registered at boot, and its heartbeat.

When a worker builds its actors it registers the card of every job type it serves
(:func:`register`), refusing to start if another live worker registered one of its names with a
different schema. While it runs, :class:`Heartbeat` tells the catalogue every 10 s that it
still serves them, so ``GET /v1/job-types`` and the admin page can show types with no live
worker; on a clean shutdown it leaves at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from offload.contracts import JobContract
from offload.contracts.registered import RegisteredContract, card, differences
from offload.errors import ConfigError, StatusStoreUnavailable
from offload.status.catalogue import HEARTBEAT_S, Conflict, ContractStore, Full

logger = logging.getLogger(__name__)

#: The most job types the catalogue holds; a registration that would pass it is refused.
MAX_TYPES = 1000


def worker_id() -> str:
    """This process, as the catalogue names its workers: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def cards_for(contracts: Sequence[JobContract], *, service: str) -> list[dict[str, Any]]:
    """The cards of ``contracts``, as ``service`` registers them, each checked as the API will read it.

    Raises:
        ConfigError: a card is larger than the catalogue takes, or could not be read back (its
            schema does not compile, a limit is out of range); the message says which and why.
    """
    try:
        found = [card(contract, service=service) for contract in contracts]
        for each in found:
            RegisteredContract.from_card(each)  # what the API will rebuild from it must build
    except ValueError as exc:
        raise ConfigError(f"A job type of service {service!r} cannot be registered: {exc}") from None
    return found


def register(store: ContractStore, cards: list[dict[str, Any]]) -> bool:
    """Register ``cards``; False if Redis is unreachable (the heartbeat tries again).

    Raises:
        ConfigError: a live worker registered one of the names with another schema (the message
            names both schema hashes and where the schemas differ), or the catalogue is full.
    """
    try:
        refused = store.register(cards, limit=MAX_TYPES)
    except StatusStoreUnavailable:
        logger.warning("Redis is unreachable: this worker's job types are registered when it is back.")
        return False
    if isinstance(refused, Conflict):
        mine = next(found for found in cards if found["name"] == refused.name)
        where = ", ".join(differences(refused.registered, mine)[:10]) or "(no field: the hash rule changed)"
        raise ConfigError(
            f"Job type {refused.name!r} is registered with schema {refused.registered.get('schema_hash')} by "
            f"service {refused.registered.get('service')!r}, which has live workers; this worker declares "
            f"{mine['schema_hash']}. They differ at: {where}. Give the new shape a new type name, or stop the "
            "old workers first."
        )
    if isinstance(refused, Full):
        raise ConfigError(f"The job-type catalogue holds {refused.limit} types already; retire some first.")
    return True


class Heartbeat(Middleware):
    """Keeps the catalogue told which job types this worker process serves.

    Each worker process beats from a daemon thread every :data:`HEARTBEAT_S` seconds; a
    registration that found Redis down at boot is retried on each beat.
    """

    def __init__(self, store: ContractStore, cards: list[dict[str, Any]], *, registered: bool) -> None:
        self.store = store
        self.cards = cards
        self.names = [found["name"] for found in cards]
        self.registered = registered
        self.worker = worker_id()
        self._stop = threading.Event()
        self._beating = threading.Lock()  # a beat in flight ends before the leave, never after it

    def after_worker_boot(self, _broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Start beating, from this worker process, for the types of the queues it consumes.

        A process started with ``--queues email system`` serves ``email.*`` and the system types,
        not ``webhook.deliver`` although its spec declares it: only what it consumes counts as live.
        """
        consumed = getattr(worker, "consumer_whitelist", None)
        self.names = [found["name"] for found in self.cards if not consumed or found["queue"] in consumed]
        self.worker = worker_id()
        self._stop.clear()
        threading.Thread(target=self._run, name="offload-heartbeat", daemon=True).start()

    def before_worker_shutdown(self, _broker: dramatiq.Broker, _worker: dramatiq.Worker) -> None:
        """Stop beating and leave the catalogue's list of live workers."""
        self._stop.set()
        try:
            with self._beating:
                self.store.leave(self.worker, self.names)
        except StatusStoreUnavailable:
            logger.info("Redis is unreachable: this worker's heartbeats will simply age out.")

    def beat(self) -> None:
        """Register if not done yet, then record a heartbeat for every type served (unless stopping)."""
        with self._beating:
            if not self._stop.is_set():
                self._beat()

    def _beat(self) -> None:
        try:
            if not self.registered:
                self.registered = register(self.store, self.cards)
            self.store.heartbeat(self.worker, self.names)
        except StatusStoreUnavailable:
            logger.debug("Heartbeat skipped: Redis is unreachable.")
        except ConfigError as exc:
            logger.error("%s", exc)

    def _run(self) -> None:
        while True:
            self.beat()
            if self._stop.wait(HEARTBEAT_S):
                return
