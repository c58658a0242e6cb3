"""A circuit breaker around the payment gateway, shared by every worker process through the shop's Redis.

Closed, calls go through and failures are counted. ``threshold`` failures within ``window``
seconds open it: for ``cooldown`` seconds no charge is attempted, and a job that would make one
is held back with :class:`offload.TransientJobError` (``counted=False``), so Offload runs it again
when the circuit may have closed without using up one of its retries. After the cooldown the
circuit is half-open: one charge probes the gateway while the others keep waiting; if it
succeeds the circuit closes, if it fails it opens again at once.

So a gateway that is down for a while costs a few failed charges, not one per order, and the
orders wait and complete once it is back.
"""

from __future__ import annotations

import redis

from offload import TransientJobError

#: KEYS: open, tripped, probe. ARGV: probe seconds. Returns {allowed, seconds to wait}.
_CHECK = """
local left = redis.call('TTL', KEYS[1])
if left > 0 then return {0, left} end
if redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[1]) then return {1, 0} end
  return {0, 1}
end
return {1, 0}
"""

#: KEYS: failures, open, tripped, probe. ARGV: threshold, window, cooldown. Returns 1 if it opened.
_FAIL = """
redis.call('DEL', KEYS[4])
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
    """One named circuit (``gateway``) in the shop's Redis.

    Args:
        client: the shop's Redis client.
        prefix: the shop's key prefix.
        name: the circuit's name.
        threshold: failures within ``window`` seconds that open the circuit.
        window: seconds over which failures are counted.
        cooldown: seconds an open circuit stays open.
        probe_seconds: the longest one half-open probe holds the others back (about a call's timeout).
    """

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        name: str,
        *,
        threshold: int = 5,
        window: int = 30,
        cooldown: int = 10,
        probe_seconds: int = 10,
    ) -> None:
        self.client = client
        self.name = name
        self.threshold = threshold
        self.window = window
        self.cooldown = cooldown
        self.probe_seconds = probe_seconds
        base = f"{prefix}breaker:{name}:"
        self.keys = [base + part for part in ("failures", "open", "tripped", "probe")]
        self._check = client.register_script(_CHECK)
        self._fail = client.register_script(_FAIL)

    def check(self) -> None:
        """Allow one call unless the circuit is open (or half-open with a probe under way).

        Raises:
            TransientJobError: code ``circuit_open``, not counted as an attempt, ``retry_after`` set.
        """
        allowed, wait = self._check(keys=self.keys[1:], args=[self.probe_seconds])
        if not allowed:
            raise TransientJobError(
                f"Charges are paused for {wait} s: the payment gateway failed repeatedly.",
                code="circuit_open",
                retry_after=float(wait),
                counted=False,
            )

    def failure(self) -> bool:
        """Count a failed call; True if this failure opened the circuit."""
        return bool(self._fail(keys=self.keys, args=[self.threshold, self.window, self.cooldown]))

    def success(self) -> None:
        """A call went through: the gateway is trusted again."""
        self.client.delete(*self.keys)

    @property
    def is_open(self) -> bool:
        """Whether calls are paused right now."""
        return bool(self.client.exists(self.keys[1]))
