"""A publisher built from settings: the status store, the broker transport, the catalogue, the quotas."""

from __future__ import annotations

from collections.abc import Iterable

from offload.contracts import BUILT_IN, JobContract, Registry
from offload.publish.amqp import ConfirmingPublisher
from offload.publish.publisher import Publisher, http_links_allowed, settings_url_policy
from offload.publish.sequence import SubmitSequence
from offload.publish.transport import Transport
from offload.settings import Settings
from offload.status import Retention, StatusStore
from offload.status.catalogue import ContractStore
from offload.status.quotas import Quotas
from offload.submission import Preparer
from offload.urls import UrlPolicy


def build_publisher(
    settings: Settings,
    *,
    registry: Registry | None = None,
    local: Iterable[JobContract] = BUILT_IN,
    url_policy: UrlPolicy | None = None,
    pin_connections: bool = False,
    transport: Transport | None = None,
) -> Publisher:
    """The publisher a process needs (one per process).

    It submits the job types of the live catalogue (:class:`~offload.catalogue.Catalogue`): the
    ``local`` contracts this process imports (a name given twice counts once), and every type a
    worker registered; a given
    ``registry`` replaces the catalogue. ``pin_connections`` gives each thread its own Redis
    connection for state changes (workers). ``transport`` replaces RabbitMQ (a test's
    :class:`~offload.publish.transport.MemoryTransport`).
    """
    from offload.broker import queue_arguments  # the broker module imports dramatiq; keep it lazy
    from offload.catalogue import Catalogue

    store = StatusStore.from_url(
        settings.redis_url.get_secret_value(),
        prefix=settings.redis_prefix,
        retention=Retention(settings.retention_succeeded, settings.retention_failed),
        pin_connections=pin_connections,
    )
    if transport is None:
        transport = ConfirmingPublisher(
            settings.broker_url.get_secret_value(), queue_arguments=queue_arguments, timeout=settings.publish_timeout
        )
    if registry is None:
        known = {contract.name: contract for contract in local}
        registry = Catalogue(ContractStore(store), known.values())
    preparer = Preparer(
        registry=registry,
        url_policy=url_policy or settings_url_policy(settings),
        max_delay=settings.max_delay,
        http_links=http_links_allowed(settings),
    )
    quotas = Quotas(store)
    sequence = SubmitSequence(
        store,
        transport,
        quotas,
        publish_timeout=settings.publish_timeout,
        idempotency_ttl=settings.idempotency_ttl,
    )
    return Publisher(store=store, preparer=preparer, sequence=sequence)
