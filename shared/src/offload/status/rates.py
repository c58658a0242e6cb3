"""Send rates shared by every worker process through Redis (``send-rate:<name>``): an SMTP or push service's limit."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from dramatiq.rate_limits import WindowRateLimiter
from dramatiq.rate_limits.backends import RedisBackend

from offload.errors import TransientJobError

if TYPE_CHECKING:
    from offload.status.store import StatusStore


class SendRate:
    """The provider's messages-per-second limit, shared by every worker process through Redis.

    Built on Dramatiq's ``WindowRateLimiter``: a send waits (in short sleeps) for a slot; after
    ``max_wait`` seconds without one the attempt is deferred (``code``, ``smtp_throttled`` by
    default) and retried later.
    """

    def __init__(
        self,
        store: StatusStore,
        name: str,
        *,
        per_second: int,
        max_wait: float = 10.0,
        code: str = "smtp_throttled",
        what: str = "The SMTP send rate",
    ) -> None:
        backend = RedisBackend(client=store.client)
        key = store.keys.send_rate(name)
        self.limiter = WindowRateLimiter(backend, key, limit=per_second, window=1)  # type: ignore[no-untyped-call]
        self.max_wait = max_wait
        self.code = code
        self.what = what

    def wait(self) -> None:
        """Block until the provider may take one more message.

        Raises:
            TransientJobError: no slot came within ``max_wait`` seconds.
        """
        deadline = time.monotonic() + self.max_wait
        while True:
            with self.limiter.acquire(raise_on_failure=False) as acquired:
                if acquired:
                    return
            if time.monotonic() > deadline:
                raise TransientJobError(f"{self.what} is saturated; deferring.", code=self.code)
            time.sleep(0.02)
