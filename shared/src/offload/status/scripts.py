"""Running the status store's Lua scripts: loading them, and a lean connection path per process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

import redis
from redis.exceptions import NoScriptError

from offload.errors import StatusStoreUnavailable

_SCRIPTS = (
    "create",
    "abort",
    "start",
    "progress",
    "finish",
    "fail_unstarted",
    "delete",
    "refuse",
    "cancel",
    "reopen",
    "claim_due",
    "promoted",
    "trim",
    "trim_tags",
    "migrate",
    "claim_outbox",
    "log",
    "flow_create",
    "flow_cancel",
    "flow_abort",
    "tenant_rate",
)


#: Seconds a connection may sit unused before it is checked for a server-side close.
STALE_AFTER = 1.0


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch (what every stored timestamp uses)."""
    return int(time.time() * 1000)


def named(reply: list[Any]) -> dict[str, Any]:
    """A script's reply, a flat list of alternating names and values, as a dict.

    Every script that answers more than one value answers so: callers read the reply by name,
    and a script may add a value without moving the others.
    """
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _load_scripts() -> dict[str, str]:
    folder = resources.files("offload.status") / "lua"
    prelude = (folder / "_prelude.lua").read_text()
    return {name: prelude + "\n" + (folder / f"{name}.lua").read_text() for name in _SCRIPTS}


@contextmanager
def redis_errors() -> Iterator[None]:
    """Turn any Redis connection failure into :class:`StatusStoreUnavailable` (HTTP 503).

    Raises:
        StatusStoreUnavailable: Redis is unreachable, timed out or answered with an error.
    """
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StatusStoreUnavailable("The job status store (Redis) is unavailable.") from exc
    except redis.ResponseError as exc:
        raise StatusStoreUnavailable("The job status store (Redis) refused the request.") from exc


class ScriptRunner:
    """Runs the status store's Lua scripts on connections of its own.

    Scripts go straight to a connection with ``EVALSHA`` (``EVAL`` once if the server lost the
    script): redis-py's general command path (pool health checks, retry wrapper, Script object)
    cost more CPU than the scripts themselves on the hot paths.

    Args:
        client: the Redis client whose pool makes the connections.
        prefix: the key prefix, passed to every script as ``ARGV[1]``.
        pin_connections: give each thread one connection of its own (worker threads); otherwise
            share a free list (gevent servers, where every greenlet would pin one).
    """

    def __init__(self, client: redis.Redis, *, prefix: str, pin_connections: bool = False) -> None:
        self.client = client
        self.prefix = prefix
        self.pin_connections = pin_connections
        self.scripts = {name: client.register_script(text) for name, text in _load_scripts().items()}
        self._pinned = threading.local()
        self._idle: list[Any] = []
        self._made: list[Any] = []

    def run(self, name: str, job_id: str, *args: str | int | float) -> Any:
        """Run script ``name`` for ``job_id`` and return its reply.

        Raises:
            StatusStoreUnavailable: Redis is unreachable or the script failed.
        """
        script = self.scripts[name]
        argv = (self.prefix, job_id, now_ms(), *args)
        connection = self._take_connection()
        try:
            with redis_errors():
                try:
                    connection.send_command("EVALSHA", script.sha, 0, *argv)
                    reply = connection.read_response()
                except NoScriptError:
                    connection.send_command("EVAL", script.script, 0, *argv)
                    reply = connection.read_response()
        except BaseException:
            self._drop(connection)
            raise
        self._give_back(connection)
        return reply

    def run_many(self, name: str, calls: list[tuple[str, tuple[str | int | float, ...]]]) -> list[Any]:
        """Run script ``name`` once per ``(job_id, args)`` in one round trip; the replies in order.

        A call the server refused comes back as its exception (the others still ran); a lost
        script is loaded again and the calls it refused are run once more.

        Raises:
            StatusStoreUnavailable: Redis is unreachable (none of the calls may have run, or all).
        """
        script = self.scripts[name]
        stamp = now_ms()
        argvs = [(self.prefix, job_id, stamp, *args) for job_id, args in calls]
        connection = self._take_connection()
        try:
            with redis_errors():
                connection.send_packed_command(
                    connection.pack_commands([("EVALSHA", script.sha, 0, *argv) for argv in argvs])
                )
                replies = [self._reply(connection) for _ in argvs]
                lost = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
                if lost:
                    connection.send_packed_command(
                        connection.pack_commands([("EVAL", script.script, 0, *argvs[i]) for i in lost])
                    )
                    for i in lost:
                        replies[i] = self._reply(connection)
        except BaseException:
            self._drop(connection)
            raise
        self._give_back(connection)
        return replies

    def _drop(self, connection: Any) -> None:
        """Close a connection a call failed on: it may hold half a reply, so it is never reused."""
        connection.disconnect()
        self._made.remove(connection)
        if self.pin_connections:
            self._pinned.connection = None

    def _give_back(self, connection: Any) -> None:
        """Return a connection after a call (a pinned one stays with its thread)."""
        if not self.pin_connections:
            self._idle.append(connection)

    @staticmethod
    def _reply(connection: Any) -> Any:
        try:
            return connection.read_response()
        except redis.ResponseError as exc:
            return exc

    def _take_connection(self) -> Any:
        if self.pin_connections:
            connection = getattr(self._pinned, "connection", None)
            if connection is None:
                connection = self._pinned.connection = self._make_connection()
        else:
            try:
                connection = self._idle.pop()
            except IndexError:
                return self._make_connection()
        # A connection left idle a while may have been closed by the server (a Redis restart):
        # if it has something to read, reconnect now rather than fail the next command. Busy
        # connections skip the check (a poll per command showed in the worker's profile).
        now = time.monotonic()
        if now - getattr(connection, "offload_last_used", now) > STALE_AFTER:
            try:
                stale = connection._sock is not None and connection.can_read()
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                stale = True
            if stale:
                connection.disconnect()
        connection.offload_last_used = now
        return connection

    def _make_connection(self) -> Any:
        # Made from the pool's settings but not counted by the pool: a connection dropped after
        # a failure is never handed back to it, so the pool's count would only grow, and after
        # ``max_connections`` (100 by default in redis-py 8) failures during an outage no script
        # could run again even once Redis was back (chaos scenario F8 found it).
        pool = self.client.connection_pool
        connection = pool.connection_class(**pool.connection_kwargs)
        self._made.append(connection)
        return connection

    def close(self) -> None:
        """Disconnect every connection this runner opened, and the client's pool."""
        for connection in self._made:
            connection.disconnect()
        self._made.clear()
        self._idle.clear()
        self.client.close()
