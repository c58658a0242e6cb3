"""The API's dependencies, built once per process and kept in ``app.extensions["offload"]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

from offload.contracts import Registry
from offload.publish import Publisher
from offload.settings import ApiKey, Settings
from offload.signing import LinkSigner, ReadTokens
from offload.status import BatchStore, StatusStore
from offload.status.audit import AuditLog
from offload.storage import Storage
from offload_api.streams import StreamSlots

if TYPE_CHECKING:
    from offload_api.key_ring import KeyRing
    from offload_api.metrics import ApiMetrics


@dataclass
class Services:
    """Everything a view needs; views reach it with :func:`services`."""

    settings: Settings
    publisher: Publisher
    registry: Registry
    #: Every API key accepted, by SHA-256: the key ring's live table (``offload_api.key_ring``).
    keys: dict[bytes, ApiKey]
    storage: Storage
    signer: LinkSigner
    #: Makes and checks browser tokens (``offload_api.browser``).
    tokens: ReadTokens
    #: The API keys of ``OFFLOAD_API_KEYS`` and Redis, refreshed within a second (``offload_api.key_ring``).
    key_ring: KeyRing | None = None
    #: The audit log of admin actions (``offload_api.audit``).
    audit: AuditLog | None = None
    #: The API's Prometheus metrics (None when OFFLOAD_METRICS is off).
    metrics: ApiMetrics | None = None
    #: The open event streams, per tenant (``offload_api.streams``).
    streams: StreamSlots = field(default_factory=StreamSlots)
    openapi: dict[str, Any] | None = None
    #: The catalogue version :attr:`openapi` was built from.
    openapi_version: int = -1

    @property
    def store(self) -> StatusStore:
        """The job status store."""
        return self.publisher.store

    @property
    def batches(self) -> BatchStore:
        """The batch store."""
        return self.publisher.batches


#: Where an app keeps its :class:`Services` in ``app.extensions``.
KEY = "offload"


def init_app(app: Flask, services: Services) -> None:
    """Attach ``services`` to ``app`` (the extension keeps no reference to the app itself)."""
    app.extensions[KEY] = services


def services() -> Services:
    """The current app's services."""
    found: Services = current_app.extensions[KEY]
    return found


def services_of(app: object) -> Services | None:
    """The services of ``app`` outside a request (None when it is no app of ours)."""
    found = getattr(app, "extensions", {}).get(KEY)
    return found if isinstance(found, Services) else None
