"""The Redis database a test suite may flush: empty, or marked as the tests' own.

Tests run against a database of their own (db 15 by default); the marker key keeps a suite from
flushing a database that holds anything else (RQ's ``find_empty_redis_database`` habit).
"""

from __future__ import annotations

import redis

from offload.status.keys import TEST_DB_OWNER
from offload.status.scripts import redis_errors

#: Marks a Redis database as the tests' own (named in ``keys.py``).
OWNER_KEY = TEST_DB_OWNER


class TestDatabase:
    """One Redis database for tests: claimed once, flushed after each test."""

    __test__ = False  # not a test class, whatever pytest's name rules say

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=2)

    def claim(self) -> bool:
        """Mark the database as the tests' own; False (and untouched) if it holds other data.

        Raises:
            StatusStoreUnavailable: Redis is unreachable.
        """
        with redis_errors():
            if self.client.dbsize() and not self.client.exists(OWNER_KEY):
                return False
            self.client.set(OWNER_KEY, "1")
        return True

    def flush(self) -> None:
        """Empty the database, keeping it marked as the tests' own."""
        with redis_errors():
            self.client.flushdb()
            self.client.set(OWNER_KEY, "1")

    def close(self) -> None:
        """Disconnect."""
        self.client.close()
