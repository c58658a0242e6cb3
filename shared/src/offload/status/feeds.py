"""Each tenant's feed of job changes: a Redis stream the Lua scripts append to (``GET /v1/events``).

Every change the scripts publish on a job's channel (a state change, progress, a cancel request)
is also appended, in the same script, to its tenant's stream ``<prefix>:feed:<tenant>`` with the
job's id, type, queue and tags beside the event: no change is in one and not the other, and a
transition costs no round trip more. The stream keeps about the last 10,000 changes
(``FEED_LENGTH`` in ``lua/_prelude.lua``, ``XADD MAXLEN ~``), and none older than
:data:`FEED_MAX_AGE` (``Janitor.trim_indexes``): the window a reader may resume in.
Entry ids are Redis stream ids (``<ms>-<n>``), ordered within a tenant's stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

import redis

from offload.status.facet import Facet
from offload.status.scripts import redis_errors

#: Seconds a blocking read may take beyond its own block before its connection counts as dead.
_READ_MARGIN = 5.0
#: Seconds a change stays in its feed at most: the janitor's trim drops older ones (``XTRIM MINID``),
#: so a quiet tenant's feed does not keep its last 10,000 changes for ever.
FEED_MAX_AGE = 3600


def entry_id(raw: str) -> tuple[int, int] | None:
    """A stream entry id (``<ms>-<n>``, or ``<ms>``) as a comparable pair; None if it is not one."""
    ms, _, n = raw.partition("-")
    if not ms.isdigit() or not (n.isdigit() or n == "") or len(ms) > 15 or len(n) > 15:
        return None
    return int(ms), int(n or 0)


@dataclass(frozen=True)
class Change:
    """One change of a job, as its tenant's feed holds it."""

    #: The stream entry id (``<ms>-<n>``): the SSE event id a reader resumes after.
    id: str
    tenant: str
    job_id: str
    type: str
    queue: str
    tags: list[str]
    #: The event as published on the job's channel: ``seq``, ``kind``, ``state``, ``at``, ...
    event: dict[str, Any]

    @property
    def written_ms(self) -> int:
        """When the change was written (the stream id's milliseconds, Redis's clock)."""
        return int(self.id.partition("-")[0])


class Feeds(Facet):
    """Reading the tenants' feeds of job changes; the Lua scripts write them."""

    _blocking: redis.Redis | None = None

    def tenants(self) -> list[str]:
        """Every tenant that has jobs (whose feeds an admin's reader follows).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            return sorted(cast(set[str], self.client.smembers(self.keys.tenants)))

    def latest(self, tenants: list[str]) -> dict[str, str]:
        """The id of the newest change in each tenant's feed (``0-0`` for an empty feed): where "now" starts.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            for tenant in tenants:
                pipe.xrevrange(self.keys.feed(tenant), count=1)
            newest = pipe.execute()
        return {tenant: (entries[0][0] if entries else "0-0") for tenant, entries in zip(tenants, newest, strict=True)}

    def missed(self, positions: dict[str, str]) -> bool:
        """Whether a change after a reader's position may have left its feed already (trimmed: too old).

        A feed is trimmed from its oldest end, so a position still in the feed has everything after
        it; one that is gone, older than the feed's first entry while the feed has lost entries, may
        not (an id the feed never held, newer than its first entry, misses nothing).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            for tenant, position in positions.items():
                pipe.xinfo_stream(self.keys.feed(tenant))
                pipe.xrange(self.keys.feed(tenant), position, position, count=1)
            replies = pipe.execute(raise_on_error=False)
        for index, position in enumerate(positions.values()):
            info, still_there = replies[2 * index], replies[2 * index + 1]
            if isinstance(info, Exception) or still_there:
                continue  # no feed yet, or the position is still in it
            if int(info["entries-added"]) <= int(info["length"]):
                continue  # nothing was ever trimmed
            first = info["first-entry"][0] if info["first-entry"] else info["last-generated-id"]
            mine, oldest = entry_id(position), entry_id(str(first))
            if mine is not None and oldest is not None and mine < oldest:
                return True
        return False

    def read(self, positions: dict[str, str], *, count: int, block_ms: int) -> list[Change]:
        """The changes after each tenant's position (at most ``count`` a feed), waiting up to ``block_ms`` for one.

        Waits on a connection of its own (a blocking read outlasts the store's short socket
        timeout), taken from a pool that every reader of this process shares.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        streams = {self.keys.feed(tenant): position for tenant, position in positions.items()}
        with redis_errors():
            reply = self._blocking_client(block_ms).xread(streams, count=count, block=block_ms)  # type: ignore[arg-type]
        base = len(self.keys.feed(""))
        changes = []
        feeds = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], reply or [])
        for key, entries in feeds:
            tenant = key[base:]
            for stream_id, fields in entries:
                changes.append(
                    Change(
                        id=stream_id,
                        tenant=tenant,
                        job_id=fields.get("job", ""),
                        type=fields.get("type", ""),
                        queue=fields.get("queue", ""),
                        tags=json.loads(fields["tags"]) if fields.get("tags") else [],
                        event=json.loads(fields.get("event") or "{}"),
                    )
                )
        return changes

    def _blocking_client(self, block_ms: int) -> redis.Redis:
        if self._blocking is None:
            kwargs = dict(self.client.connection_pool.connection_kwargs)
            kwargs["socket_timeout"] = block_ms / 1000 + _READ_MARGIN
            self._blocking = redis.Redis(connection_pool=type(self.client.connection_pool)(**kwargs))
        return self._blocking

    def close(self) -> None:
        """Disconnect the blocking readers' connections."""
        if self._blocking is not None:
            self._blocking.connection_pool.disconnect()
