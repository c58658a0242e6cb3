"""Each API process's copy of the API keys: ``OFFLOAD_API_KEYS`` and the managed keys of Redis.

A request's key is looked up in :attr:`KeyRing.table`, a dict in memory, by the SHA-256 of the
key: no Redis read per request. The ring looks at the managed keys' version in Redis at most once
every :data:`REFRESH_S` (one ``GET``, done by whichever request comes first after that time; the
others do not wait for it) and reloads the keys only when the version moved, so a key made,
rotated or revoked on any process works, or stops, on every process within about a second.
Expiries, and the end of a rotated secret's overlap, are checked against the clock at each lookup.

When keys were used is noted in memory and written to Redis in one round trip at the next look.
While Redis is unreachable the last keys known stay in force (and the look is retried every
:data:`FAILED_REFRESH_S`): a Redis outage does not lock every client out, and a key revoked
during it stops when Redis is back.

``OFFLOAD_API_KEYS`` keys are merged in as they are: they never expire, and cannot be revoked over
the API (only by changing the variable and restarting).
"""

from __future__ import annotations

import logging
import threading
import time

from offload.api_keys import Grant
from offload.errors import StatusStoreUnavailable
from offload.settings import ApiKey
from offload.status.api_keys import ApiKeyStore, grant_table
from offload.status.scripts import now_ms

logger = logging.getLogger(__name__)

#: Seconds between two looks at the managed keys' version.
REFRESH_S = 1.0
#: Seconds before looking again after Redis could not be read.
FAILED_REFRESH_S = 5.0


class KeyRing:
    """Every key this process accepts, by digest, kept in step with Redis.

    Args:
        store: the managed keys.
        env: the ``OFFLOAD_API_KEYS`` keys, by digest.
        refresh_s: the least time between two looks at Redis.
    """

    def __init__(self, store: ApiKeyStore, env: dict[bytes, Grant], *, refresh_s: float = REFRESH_S) -> None:
        self.store = store
        self._env = env
        #: The live table, changed in place (admission control holds the same dict): a lookup
        #: during a reload finds either a key's old grant or its new one, never nothing.
        self.table: dict[bytes, ApiKey] = dict(env)
        self._refresh_s = refresh_s
        self._next_look = float("-inf")
        self._version = -1
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()
        self._warned = False

    def check(self, grant: ApiKey | None) -> Grant | None:
        """The grant of a key found in :attr:`table`, if it works now (None: unknown, expired, overlap ended).

        Looks at Redis first when :data:`REFRESH_S` has passed (see the module's docstring).
        """
        if time.monotonic() >= self._next_look:
            self.refresh()
        if not isinstance(grant, Grant) or not grant.valid_at(time.time()):
            return None
        if grant.key_id is not None:
            self._used[grant.key_id] = now_ms()
        return grant

    @property
    def env_count(self) -> int:
        """How many ``OFFLOAD_API_KEYS`` keys are merged in."""
        return len(self._env)

    def refresh(self, *, force: bool = False) -> None:
        """Write the last-used times, look at the version, and reload the keys if it moved.

        Only one thread looks at a time; the others keep the keys they have.
        """
        if not self._lock.acquire(blocking=force):
            return
        try:
            self._next_look = time.monotonic() + self._refresh_s
            used, self._used = self._used, {}
            try:
                self.store.touch(used)
                if not force and self.store.version() == self._version:
                    return
                version, keys = self.store.snapshot()
            except StatusStoreUnavailable:
                self._next_look = time.monotonic() + FAILED_REFRESH_S
                if not self._warned:
                    logger.warning("Redis is unreachable: the API keeps the keys it last read.")
                    self._warned = True
                return
            self._warned = False
            self._install(version, {**grant_table(keys), **self._env})
        finally:
            self._lock.release()

    def _install(self, version: int, table: dict[bytes, Grant]) -> None:
        for gone in [known for known in self.table if known not in table]:
            self.table.pop(gone, None)
        self.table.update(table)
        self._version = version
