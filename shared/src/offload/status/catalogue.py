"""The job-type catalogue in Redis: the contracts workers registered, and which workers serve each.

Layout (under the deployment's prefix; named in ``keys.py``, ``status/README.md`` lists every key):

- ``catalogue`` (hash): type name -> its card, the JSON a worker registered (see
  :func:`offload.contracts.registered.card`).
- ``catalogue:version`` (integer): bumped on every change of the hash, so a process notices a new,
  changed or retired type with one ``GET`` a second, never a read per request.
- ``catalogue:workers:<type>`` (sorted set): worker id -> time of its last heartbeat (ms).

Only processes holding Redis credentials write here: the HTTP API offers no way to register.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from offload.status.scripts import redis_errors

if TYPE_CHECKING:
    from offload.status.store import StatusStore

#: A worker is live while its last heartbeat is younger than this (three missed beats).
LIVE_FOR_S = 30.0
#: Seconds between two heartbeats of a worker.
HEARTBEAT_S = 10.0
#: Heartbeats older than this are dropped from a type's set of workers.
FORGET_AFTER_S = 3600.0

# Check every card against the registered one, then write them all: atomically, so two workers
# booting at once with different schemas cannot both pass. A registered card with another schema
# hash refuses the registration while a worker serving it is live; once none is, it is replaced
# (a worker upgraded after its old version stopped).
_REGISTER = """
local catalogue, version = KEYS[1], KEYS[2]
local now, live_after, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local changed, added = 0, 0
for i = 4, #ARGV, 3 do
  local name, hash, card = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local old = redis.call('HGET', catalogue, name)
  if old then
    local old_hash = cjson.decode(old)['schema_hash']
    if old_hash ~= hash and redis.call('ZCOUNT', catalogue .. ':workers:' .. name, live_after, '+inf') > 0 then
      return {'conflict', name, old}
    end
  else
    added = added + 1
  end
end
if added > 0 and redis.call('HLEN', catalogue) + added > limit then
  return {'full', tostring(limit)}
end
for i = 4, #ARGV, 3 do
  local name, card = ARGV[i], ARGV[i + 2]
  if redis.call('HGET', catalogue, name) ~= card then
    redis.call('HSET', catalogue, name, card)
    changed = 1
  end
end
if changed == 1 then redis.call('INCR', version) end
return {'ok'}
"""


@dataclass(frozen=True)
class Conflict:
    """A registration refused because ``name`` is registered, with live workers, under another schema."""

    name: str
    registered: dict[str, Any]


@dataclass(frozen=True)
class Full:
    """A registration refused because the catalogue holds ``limit`` types already."""

    limit: int


class ContractStore:
    """Reads and writes the catalogue's keys; the one owner of their layout.

    Args:
        store: the status store whose Redis client and key names it uses.
    """

    def __init__(self, store: StatusStore) -> None:
        self._client = store.client
        self._keys = store.keys
        self._register = self._client.register_script(_REGISTER)

    def register(self, cards: Iterable[Mapping[str, Any]], *, limit: int) -> Conflict | Full | None:
        """Register ``cards`` all at once, or none of them; ``None`` when registered.

        Raises:
            StatusStoreUnavailable: Redis is unreachable.
        """
        args: list[str] = []
        for card in cards:
            args += [card["name"], card["schema_hash"], json.dumps(card, sort_keys=True, separators=(",", ":"))]
        now = time.time() * 1000
        with redis_errors():
            reply = self._register(
                keys=[self._keys.catalogue, self._keys.catalogue_version],
                args=[now, now - LIVE_FOR_S * 1000, limit, *args],
            )
        if reply[0] == "conflict":
            return Conflict(reply[1], json.loads(reply[2]))
        if reply[0] == "full":
            return Full(int(reply[1]))
        return None

    def heartbeat(self, worker: str, names: Iterable[str]) -> None:
        """Record that ``worker`` serves ``names`` now, and forget heartbeats older than an hour.

        Raises:
            StatusStoreUnavailable: Redis is unreachable.
        """
        now = time.time() * 1000
        with redis_errors(), self._client.pipeline(transaction=False) as pipe:
            for name in names:
                workers = self._keys.catalogue_workers(name)
                pipe.zadd(workers, {worker: now})
                pipe.zremrangebyscore(workers, "-inf", now - FORGET_AFTER_S * 1000)
                pipe.expire(workers, int(FORGET_AFTER_S))
            pipe.execute()

    def leave(self, worker: str, names: Iterable[str]) -> None:
        """Record that ``worker`` stopped serving ``names`` (it shuts down).

        Raises:
            StatusStoreUnavailable: Redis is unreachable.
        """
        with redis_errors(), self._client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zrem(self._keys.catalogue_workers(name), worker)
            pipe.execute()

    def version(self) -> int:
        """The catalogue's version: it changes whenever a type is registered, changed or retired.

        Raises:
            StatusStoreUnavailable: Redis is unreachable.
        """
        with redis_errors():
            raw = self._client.get(self._keys.catalogue_version)
        return int(raw or 0)

    def cards(self) -> tuple[int, dict[str, dict[str, Any]]]:
        """The version and every registered card, by type name, read together.

        Raises:
            StatusStoreUnavailable: Redis is unreachable.
        """
        with redis_errors(), self._client.pipeline(transaction=True) as pipe:
            pipe.get(self._keys.catalogue_version)
            pipe.hgetall(self._keys.catalogue)
            raw_version, raw_cards = pipe.execute()
        return int(raw_version or 0), {name: json.loads(raw) for name, raw in raw_cards.items()}

    def live_workers(self, names: Iterable[str]) -> dict[str, int]:
        """How many workers sent a heartbeat for each of ``names`` within the last 30 s.

        Raises:
            StatusStoreUnavailable: Redis is unreachable.
        """
        wanted = list(names)
        after = time.time() * 1000 - LIVE_FOR_S * 1000
        with redis_errors(), self._client.pipeline(transaction=False) as pipe:
            for name in wanted:
                pipe.zcount(self._keys.catalogue_workers(name), after, "+inf")
            counts = pipe.execute()
        return dict(zip(wanted, (int(count) for count in counts), strict=True))

    def retire(self, name: str) -> bool:
        """Remove ``name`` from the catalogue (its queued jobs stay; new ones are refused); False if unknown.

        Raises:
            StatusStoreUnavailable: Redis is unreachable.
        """
        with redis_errors(), self._client.pipeline(transaction=True) as pipe:
            pipe.hdel(self._keys.catalogue, name)
            pipe.delete(self._keys.catalogue_workers(name))
            removed, _ = pipe.execute()
            if removed:
                self._client.incr(self._keys.catalogue_version)
        return bool(removed)
