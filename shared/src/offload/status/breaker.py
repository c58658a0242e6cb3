"""A circuit breaker per destination host, shared by every worker process through Redis.

After ``threshold`` failures within ``window`` seconds the circuit opens: calls to that host are
not made for ``cooldown`` seconds (the job waits and retries instead of hammering a receiver that
is down; a wait for an open circuit does not use up one of the job's retries). When the cooldown
ends one call goes through; if it fails the circuit opens again at once (half-open), if it
succeeds the host is trusted again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from offload.errors import TransientJobError

if TYPE_CHECKING:
    from offload.status.store import StatusStore

_FAIL = """
local failures = redis.call('INCR', KEYS[1])
if failures == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if failures >= tonumber(ARGV[1]) or redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[3])
  redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[3]) * 10)
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class CircuitBreaker:
    """Per-host failure counting and short-circuiting.

    Args:
        store: the status store whose Redis client and key names it uses.
        threshold: failures within ``window`` seconds that open the circuit.
        window: seconds over which failures are counted.
        cooldown: seconds an open circuit stays open.
    """

    def __init__(self, store: StatusStore, *, threshold: int = 5, window: int = 60, cooldown: int = 30) -> None:
        self.client = store.client
        self.keys = store.keys
        self.threshold = threshold
        self.window = window
        self.cooldown = cooldown
        self._fail = self.client.register_script(_FAIL)

    def check(self, host: str) -> bool:
        """Allow a call to ``host`` unless its circuit is open; True if the host has failed lately.

        The answer tells the caller whether a success needs reporting (:meth:`success` writes only
        then), so a healthy host costs one round trip per call, not two.

        Raises:
            TransientJobError: the circuit is open (code ``circuit_open``, ``retry_after`` = its TTL).
        """
        failures, opened, tripped = self.keys.breaker(host)
        pipe = self.client.pipeline(transaction=False)
        pipe.ttl(opened)
        pipe.exists(failures, tripped)
        left, history = pipe.execute()
        if left and left > 0:
            raise TransientJobError(
                f"Calls to {host} are paused for {left} s after repeated failures.",
                code="circuit_open",
                retry_after=float(left),
                counted=False,  # no call was made: the job's retries are for calls that failed
            )
        return bool(history)

    def failure(self, host: str) -> bool:
        """Count a failed call; returns True if this failure opened the circuit."""
        return bool(self._fail(keys=list(self.keys.breaker(host)), args=[self.threshold, self.window, self.cooldown]))

    def success(self, host: str) -> None:
        """A call got through: forget the host's failures and close its circuit for good."""
        self.client.delete(*self.keys.breaker(host))
