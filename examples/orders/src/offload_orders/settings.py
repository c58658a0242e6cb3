"""The shop's settings: Offload's own ``OFFLOAD_*`` ones plus ``OFFLOAD_ORDERS_*``."""

from __future__ import annotations

from pydantic import Field, SecretStr

from offload import Settings


class ShopSettings(Settings):
    """Where the shop keeps its own data, how it reaches the payment gateway, how it tracks orders.

    The web app and the worker read the same class, so one environment configures both.
    """

    #: The shop's own Redis database (prices, stock, reservations, the gateway's breaker): not
    #: Offload's, whose layout belongs to Offload. Its own db (4 here) or at least its own prefix.
    orders_redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/4")
    #: Prefix of every key the shop writes there.
    orders_prefix: str = Field(default="orders:", min_length=1, max_length=100)
    #: The tenant the shop's jobs belong to in Offload.
    orders_tenant: str = Field(default="shop", min_length=1, max_length=64)
    #: The payment gateway's base URL (``POST {url}/charges``).
    orders_gateway_url: str = "http://127.0.0.1:8099"
    #: Seconds a charge may take before it counts as a failure (connecting has 1 s).
    orders_gateway_timeout: float = Field(default=5.0, gt=0, le=60)
    #: Gateway failures within ``orders_breaker_window`` seconds that open the circuit.
    orders_breaker_threshold: int = Field(default=5, ge=1)
    orders_breaker_window: int = Field(default=30, ge=1)
    #: Seconds an open circuit stays open before one charge may probe the gateway again.
    orders_breaker_cooldown: int = Field(default=10, ge=1)
    #: The shop's public base URL, for the tracking links in responses and emails.
    orders_public_url: str = "http://127.0.0.1:8080"
    #: The longest a browser's event stream stays open (it reconnects after).
    orders_stream_seconds: float = Field(default=300.0, gt=0)
    #: Event streams one web process serves at once (each holds a thread; gunicorn_conf gives 32).
    orders_max_streams: int = Field(default=16, ge=1)
    #: Niceness of the shop's worker processes: the checkout, whose customers wait for its 202,
    #: goes first on a shared host, as Offload's API does before its email worker (which takes 5).
    worker_nice: int = Field(default=5, ge=0, le=19)
