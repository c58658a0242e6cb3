"""Each tenant's webhook signing secret, in Redis."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from offload.webhooks import new_secret

if TYPE_CHECKING:
    from offload.status.store import StatusStore

#: Seconds a rotated-out secret keeps signing deliveries beside the new one.
ROTATION_OVERLAP = 24 * 3600


class SecretStore:
    """Each tenant's webhook secret in Redis: created on first use, rotated with an overlap.

    Args:
        store: the status store whose Redis client and key names it uses.
    """

    def __init__(self, store: StatusStore) -> None:
        self.client = store.client
        self.keys = store.keys

    def current(self, tenant: str) -> str:
        """The tenant's current secret (created now if it has none)."""
        key = self.keys.webhook_secret(tenant)
        self.client.hsetnx(key, "current", new_secret())
        return str(self.client.hget(key, "current"))

    def active(self, tenant: str, *, now: float | None = None) -> list[str]:
        """The secrets deliveries are signed with: the current one, and the previous during the overlap.

        One round trip in the usual case (the tenant has a secret): this runs for every delivery.
        """
        current, previous, rotated_at = self.client.hmget(
            self.keys.webhook_secret(tenant), "current", "previous", "rotated_at"
        )
        if not current:
            return [self.current(tenant)]
        current = str(current)
        moment = time.time() if now is None else now
        if previous and rotated_at and moment - float(rotated_at) < ROTATION_OVERLAP:
            return [current, str(previous)]
        return [current]

    def rotate(self, tenant: str) -> str:
        """Make a new current secret; the old one keeps signing for :data:`ROTATION_OVERLAP` seconds."""
        key = self.keys.webhook_secret(tenant)
        fresh = new_secret()
        old = self.current(tenant)
        self.client.hset(key, mapping={"current": fresh, "previous": old, "rotated_at": time.time()})
        return fresh
