"""Waiting for a job or a flow to end: follow its events channel, read it again after each event.

One loop for :meth:`Publisher.wait <offload.publish.publisher.Publisher.wait>` and
:meth:`Flows.wait <offload.publish.flows.Flows.wait>`: subscribing before the first read means no
change between the two is missed, and each wake-up re-reads the truth rather than trusting the event.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from offload.status import redis_errors

T = TypeVar("T")


def wait_until_ended(
    subscribe: Callable[[], Any], read: Callable[[], T | None], ended: Callable[[T], bool], timeout: float
) -> T | None:
    """``read()`` once it is ``ended`` (or None), or as it is after ``timeout`` seconds.

    Raises:
        StatusStoreUnavailable: Redis is unavailable.
    """
    deadline = time.monotonic() + timeout
    with redis_errors():
        pubsub = subscribe()
        try:
            current = read()
            while current is not None and not ended(current) and time.monotonic() < deadline:
                pubsub.get_message(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                current = read()
            return current
        finally:
            pubsub.close()
