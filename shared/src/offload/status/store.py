"""The job status store: Redis hashes moved forward by Lua compare-and-set scripts.

Each job is one hash (``<prefix>:job:<id>``); every change bumps the job's ``seq`` and is
published on ``<prefix>:events:<id>`` for live events. Sorted sets index jobs by type and
state, so listing never scans the keyspace. ``keys.py`` names every key (:attr:`StatusStore.keys`);
``README.md`` beside this file says what each holds and how long.
"""

from __future__ import annotations

import redis

from offload.status.feeds import Feeds
from offload.status.flows import FlowStore
from offload.status.janitor import Janitor
from offload.status.keys import Keys
from offload.status.lifecycle import Lifecycle
from offload.status.queries import Queries
from offload.status.scripts import ScriptRunner, redis_errors
from offload.status.shapes import (
    LAYOUT,
    Claim,
    Created,
    DeadLetterReason,
    Ending,
    Page,
    Retention,
    Started,
)
from offload.status.timers import Timers

__all__ = ["LAYOUT", "Claim", "Created", "DeadLetterReason", "Ending", "Page", "Retention", "StatusStore", "Started"]


class StatusStore:
    """The job records in Redis, reached through five facets along their callers.

    - :attr:`lifecycle`: a job's moves (created, started, progress, finished, cancelled, reopened);
    - :attr:`queries`: reading records, logs, history and listings;
    - :attr:`timers`: due jobs and the webhook outbox (the promoter's);
    - :attr:`janitor`: stalled jobs, index trimming, layout migration, dead-letter notes;
    - :attr:`flows`: flows of jobs, their status and their cancel (the fan-in is in the scripts).
    - :attr:`feeds`: each tenant's feed of job changes (``GET /v1/events``).

    Thread-safe (one connection pool), usable under gevent.

    Args:
        client: a Redis client with ``decode_responses=True``.
        prefix: the key prefix (``OFFLOAD_REDIS_PREFIX``).
        retention: how long finished records are kept.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "offload",
        retention: Retention | None = None,
        pin_connections: bool = False,
    ) -> None:
        self.client = client
        self.prefix = prefix
        #: The names of this store's keys (``keys.py``).
        self.keys = Keys(prefix)
        self.retention = retention or Retention()
        #: Worker threads pin one connection each for the scripts (see :class:`ScriptRunner`).
        self.scripts = ScriptRunner(client, prefix=prefix, pin_connections=pin_connections)
        self.lifecycle = Lifecycle(self)
        self.queries = Queries(self)
        self.timers = Timers(self)
        self.janitor = Janitor(self)
        self.flows = FlowStore(self)
        self.feeds = Feeds(self)

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "offload", retention: Retention | None = None, pin_connections: bool = False
    ) -> StatusStore:
        """Connect with short timeouts, so that a dead Redis costs a request about a second, not minutes."""
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            health_check_interval=30,
            retry_on_timeout=False,
        )
        return cls(client, prefix=prefix, retention=retention, pin_connections=pin_connections)

    def close(self) -> None:
        """Disconnect every connection this store opened."""
        self.scripts.close()
        self.feeds.close()

    def ping(self) -> None:
        """Check that Redis answers.

        Raises:
            StatusStoreUnavailable: it does not.
        """
        with redis_errors():
            self.client.ping()
