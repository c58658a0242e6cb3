"""Each tenant's web push subscriptions, and the VAPID public key the push workers sign with.

A subscription is filed under the tenant and the application's user id it was made for
(``push:subs:<tenant>:<user>``, a hash of id → JSON) and indexed by id in the tenant's owner table
(``push:owners:<tenant>``), so that it can be listed per user and removed by id alone. Its id is a
digest of the tenant and the endpoint: a browser subscribing again (new keys, or another user
signing in on it) replaces its entry instead of adding one. A user keeps at most
``MAX_SUBSCRIPTIONS_PER_USER``; the oldest gives way to a new one.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from offload.contracts.push import MAX_SUBSCRIPTIONS_PER_USER

if TYPE_CHECKING:
    from offload.status.store import StatusStore

# KEYS: the owners hash, the new user's hash, the previous user's hash (or the same).
# ARGV: id, user, JSON, the most a user keeps. Returns 1 if it is new, 0 if it replaced one.
_ADD = """
local previous = redis.call('HGET', KEYS[1], ARGV[1])
if previous and KEYS[3] ~= KEYS[2] then redis.call('HDEL', KEYS[3], ARGV[1]) end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  local held = redis.call('HGETALL', KEYS[2])
  local count = #held / 2
  while count >= tonumber(ARGV[4]) do
    local oldest_id, oldest_at = nil, nil
    for i = 1, #held, 2 do
      local at = cjson.decode(held[i + 1])['created_at']
      if oldest_at == nil or at < oldest_at then oldest_id, oldest_at = held[i], at end
    end
    redis.call('HDEL', KEYS[2], oldest_id)
    redis.call('HDEL', KEYS[1], oldest_id)
    held = redis.call('HGETALL', KEYS[2])
    count = #held / 2
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if previous then return 0 end
return 1
"""


@dataclass(frozen=True)
class Subscription:
    """One browser's subscription, as stored."""

    id: str
    user_id: str
    endpoint: str
    p256dh: str
    auth: str
    created_at: float

    def public(self) -> dict[str, Any]:
        """What the API shows of it (never the keys: ``auth`` is the browser's secret)."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "endpoint": self.endpoint,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created_at)),
        }


def subscription_id(tenant: str, endpoint: str) -> str:
    """The id of the tenant's subscription at ``endpoint``: the same every time the browser subscribes."""
    return "ps_" + hashlib.sha256(f"{tenant}\n{endpoint}".encode()).hexdigest()[:24]


class PushSubscriptions:
    """Subscriptions per tenant and user, in Redis (every method may raise ``redis.RedisError``).

    Args:
        store: the status store whose Redis client and key names it uses.
    """

    def __init__(self, store: StatusStore, *, max_per_user: int = MAX_SUBSCRIPTIONS_PER_USER) -> None:
        self.client = store.client
        self.keys = store.keys
        self.max_per_user = max_per_user
        self._add = self.client.register_script(_ADD)

    def add(self, tenant: str, user_id: str, endpoint: str, p256dh: str, auth: str) -> tuple[Subscription, bool]:
        """File the subscription under ``user_id``; True if it is new (False: it replaced the browser's last one).

        A user already holding :attr:`max_per_user` loses their oldest.
        """
        sub_id = subscription_id(tenant, endpoint)
        owners = self.keys.push_owners(tenant)
        previous_user = self.client.hget(owners, sub_id)
        # to the microsecond: two subscriptions a millisecond apart must still tell which is older
        found = Subscription(sub_id, user_id, endpoint, p256dh, auth, round(time.time(), 6))
        document = json.dumps(found.__dict__, separators=(",", ":"))
        previous_key = self.keys.push_subscriptions(tenant, str(previous_user or user_id))
        new = self._add(
            keys=[owners, self.keys.push_subscriptions(tenant, user_id), previous_key],
            args=[sub_id, user_id, document, self.max_per_user],
        )
        return found, bool(new)

    def of_user(self, tenant: str, user_id: str) -> list[Subscription]:
        """The user's subscriptions, oldest first."""
        held = cast(dict[str, str], self.client.hgetall(self.keys.push_subscriptions(tenant, user_id)))
        found = [Subscription(**json.loads(document)) for document in held.values()]
        return sorted(found, key=lambda s: (s.created_at, s.id))

    def remove(self, tenant: str, sub_id: str) -> Subscription | None:
        """Remove one of the tenant's subscriptions; the one removed, or None if it had none by that id."""
        owners = self.keys.push_owners(tenant)
        owner = self.client.hget(owners, sub_id)
        if owner is None:
            return None
        key = self.keys.push_subscriptions(tenant, str(owner))
        pipe = self.client.pipeline(transaction=True)
        pipe.hget(key, sub_id)
        pipe.hdel(key, sub_id)
        pipe.hdel(owners, sub_id)
        document, _, _ = pipe.execute()
        return Subscription(**json.loads(document)) if document else None

    def register_public_key(self, public_key: str) -> str | None:
        """Record the VAPID public key the push workers sign with; returns the one it replaced, if different."""
        previous = self.client.getset(self.keys.push_public_key, public_key)
        return str(previous) if previous is not None and previous != public_key else None

    def public_key(self) -> str | None:
        """The VAPID public key browsers subscribe with (None until a push worker registered one)."""
        found = self.client.get(self.keys.push_public_key)
        return str(found) if found is not None else None
