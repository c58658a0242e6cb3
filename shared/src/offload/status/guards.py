"""What the API's access rules keep in Redis: bad keys per address, sign-in failure runs, admin sessions.

Every API process shares them, so a limit holds across replicas. The rules themselves (how many,
how long) live in the API (``offload_api.auth``, ``offload_api.admin``); these classes only keep
the counts and records. Every method raises :class:`~offload.errors.StatusStoreUnavailable` when
Redis is unreachable.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from offload.status.scripts import redis_errors

if TYPE_CHECKING:
    from offload.status.store import StatusStore


class BadKeys:
    """Failed API-key checks per client address and minute (``authfail:<address>:<minute>``)."""

    def __init__(self, store: StatusStore) -> None:
        self.client = store.client
        self.keys = store.keys

    def count(self, address: str, minute: int, *, add: bool) -> int:
        """The failures of ``address`` in ``minute`` (since the epoch), counting one more first if ``add``."""
        key = self.keys.bad_keys(address, minute)
        with redis_errors():
            if not add:
                return int(self.client.get(key) or 0)
            failures = int(self.client.incr(key))
            if failures == 1:
                self.client.expire(key, 120)
            return failures


class SignInRuns:
    """Runs of failed admin sign-ins per subject (an address, a key prefix's hash) and their waits."""

    def __init__(self, store: StatusStore) -> None:
        self.client = store.client
        self.keys = store.keys

    def waits_ms(self, subjects: tuple[tuple[str, str], ...]) -> list[int]:
        """Milliseconds each subject must still wait (0 or less: none)."""
        with redis_errors(), self.client.pipeline(transaction=False) as pipe:
            for kind, subject in subjects:
                pipe.pttl(self.keys.signin_wait(kind, subject))
            return [int(ms) for ms in pipe.execute()]

    def fail(self, kind: str, subject: str, *, remember_s: int) -> int:
        """Count one more failure in the subject's run (kept ``remember_s`` after the last); returns the run."""
        run = self.keys.signin_failures(kind, subject)
        with redis_errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.incr(run)
            pipe.expire(run, remember_s)
            return int(pipe.execute()[0])

    def make_wait(self, kind: str, subject: str, seconds: int) -> None:
        """Make the subject wait ``seconds`` before its next try."""
        with redis_errors():
            self.client.set(self.keys.signin_wait(kind, subject), "1", ex=seconds)

    def clear(self, kind: str, subject: str) -> None:
        """End the subject's run of failures."""
        with redis_errors():
            self.client.delete(self.keys.signin_failures(kind, subject))


class AdminSessions:
    """Admin page sessions (``admin-session:<sid>``): serialized data with a lifetime."""

    def __init__(self, store: StatusStore) -> None:
        self.client = store.client
        self.keys = store.keys

    def read(self, sid: str) -> tuple[str | None, int]:
        """The session's data and milliseconds to live (None and a negative number when it is gone)."""
        with redis_errors(), self.client.pipeline(transaction=False) as pipe:
            pipe.get(self.keys.admin_session(sid))
            pipe.pttl(self.keys.admin_session(sid))
            raw, ttl_ms = pipe.execute()
        return raw, int(ttl_ms)

    def delete(self, *sids: str) -> None:
        """End these sessions."""
        with redis_errors():
            self.client.delete(*(self.keys.admin_session(sid) for sid in sids))

    def update(self, sid: str, data: str) -> None:
        """Replace a live session's data within its own lifetime (one that expired meanwhile stays gone)."""
        with redis_errors():
            self.client.set(self.keys.admin_session(sid), data, keepttl=True, xx=True)

    def create(self, sid: str, data: str, lifetime: timedelta) -> None:
        """Write a new session for ``lifetime``."""
        with redis_errors():
            self.client.set(self.keys.admin_session(sid), data, ex=lifetime, nx=True)
