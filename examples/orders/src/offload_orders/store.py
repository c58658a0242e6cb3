"""The shop's own data in its own Redis: prices, stock and each order's reservation.

This is the application's data, not Offload's: a client of its own, on a database (or a key
prefix) of its own. Offload's job records live elsewhere and are read only through the SDK.

Stock is taken with a reservation per order, made and undone by Lua scripts, so that checking
every line of a cart and taking it is one atomic step: two orders racing for the last item can
never both get it (no overselling, whatever the number of workers). A reservation is keyed by the
order, so a redelivered job finds the one it made before instead of taking the stock twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import redis

#: Reserve every line of a cart, or none. KEYS: stock hash, the order's reservation.
#: ARGV: sku1, qty1, sku2, qty2, ... Returns {1, state} (reserved now or before) or {0, sku} (short).
_RESERVE = """
local state = redis.call('HGET', KEYS[2], '_state')
if state then return {1, state} end
for i = 1, #ARGV, 2 do
  local have = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if have < tonumber(ARGV[i + 1]) then return {0, ARGV[i]} end
end
for i = 1, #ARGV, 2 do
  redis.call('HINCRBY', KEYS[1], ARGV[i], -tonumber(ARGV[i + 1]))
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[2], '_state', 'held')
return {1, 'held'}
"""

#: Give a held reservation's stock back (once). KEYS: stock hash, reservation. Returns 1 if released now.
_RELEASE = """
if redis.call('HGET', KEYS[2], '_state') ~= 'held' then return 0 end
local lines = redis.call('HGETALL', KEYS[2])
for i = 1, #lines, 2 do
  if lines[i] ~= '_state' then redis.call('HINCRBY', KEYS[1], lines[i], tonumber(lines[i + 1])) end
end
redis.call('HSET', KEYS[2], '_state', 'released')
return 1
"""

#: Turn a held reservation into a sale (once). KEYS: reservation. Returns 1 if sold now.
_SELL = """
if redis.call('HGET', KEYS[1], '_state') ~= 'held' then return 0 end
redis.call('HSET', KEYS[1], '_state', 'sold')
return 1
"""

ReservationState = Literal["held", "sold", "released"]


@dataclass(frozen=True)
class Reservation:
    """The outcome of :meth:`ShopStore.reserve`: reserved (now or by an earlier delivery), or short of a SKU."""

    ok: bool
    state: ReservationState | None = None
    short_sku: str | None = None


class ShopStore:
    """Prices, stock and reservations, under one key prefix of the shop's own Redis.

    Args:
        client: a Redis client (``decode_responses=True``).
        prefix: prefix of every key (``orders:``).
    """

    def __init__(self, client: redis.Redis, prefix: str = "orders:") -> None:
        self.client = client
        self.prefix = prefix
        self._reserve = client.register_script(_RESERVE)
        self._release = client.register_script(_RELEASE)
        self._sell = client.register_script(_SELL)

    @classmethod
    def from_url(cls, url: str, prefix: str = "orders:") -> ShopStore:
        """A store on the Redis at ``url``, with short timeouts (a shop request must not hang on it)."""
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2)
        return cls(client, prefix)

    def key(self, *parts: str) -> str:
        """The name of one of the shop's keys."""
        return self.prefix + ":".join(parts)

    def stock_item(self, sku: str, *, price_cents: int, stock: int) -> None:
        """Put a product on sale (or change it): its price in cents and how many are in stock."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.key("prices"), sku, price_cents)
        pipe.hset(self.key("stock"), sku, stock)
        pipe.execute()

    def prices(self, skus: Sequence[str]) -> dict[str, int | None]:
        """The price in cents of each SKU; None for a SKU the shop does not sell."""
        if not skus:
            return {}
        found = self.client.hmget(self.key("prices"), list(skus))
        return {sku: None if price is None else int(price) for sku, price in zip(skus, found, strict=True)}

    def stock(self, sku: str) -> int:
        """How many of ``sku`` are free to reserve."""
        return int(self.client.hget(self.key("stock"), sku) or 0)

    def reserve(self, order_id: str, lines: Mapping[str, int]) -> Reservation:
        """Take the stock of every line for ``order_id``, or none of it if one is short.

        Safe to repeat: an order that already has a reservation gets it back, whatever its state.
        """
        args: list[str | int] = []
        for sku, quantity in sorted(lines.items()):
            args += [sku, quantity]
        ok, detail = self._reserve(keys=[self.key("stock"), self.key("reservation", order_id)], args=args)
        if ok:
            return Reservation(True, state=detail)
        return Reservation(False, short_sku=detail)

    def release(self, order_id: str) -> bool:
        """Give a held reservation's stock back (compensation); True if this call released it."""
        return bool(self._release(keys=[self.key("stock"), self.key("reservation", order_id)]))

    def sell(self, order_id: str) -> bool:
        """Mark a held reservation sold (its payment went through); True if this call did."""
        return bool(self._sell(keys=[self.key("reservation", order_id)]))

    def reservation(self, order_id: str) -> ReservationState | None:
        """The state of the order's reservation, or None if it has none."""
        state = self.client.hget(self.key("reservation", order_id), "_state")
        return None if state is None else state  # type: ignore[return-value]

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()
