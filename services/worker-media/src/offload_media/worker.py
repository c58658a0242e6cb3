"""The media worker: ``dramatiq offload_media.worker:setup`` serves the ``media`` queue."""

from __future__ import annotations

from collections.abc import Iterator

from dramatiq.brokers.rabbitmq import RabbitmqBroker

from offload.jobs import WorkerSpec
from offload.publish import Publisher
from offload.publish.publisher import settings_url_policy
from offload.signing import LinkSigner
from offload.storage import build_storage
from offload.worker import Resources
from offload_media import handlers, images
from offload_media.handlers import MediaHandlers
from offload_media.memory import tune_allocator
from offload_media.settings import MediaSettings
from offload_media.sources import Sources
from offload_media.video import jobs as video


def resources(settings: MediaSettings, publisher: Publisher, _given: Resources) -> Iterator[object]:
    """The storage client, source fetcher and link signer the image and video handlers share."""
    storage = build_storage(settings)
    sources = Sources(
        store=publisher.store,
        storage=storage,
        url_policy=settings_url_policy(settings),
        max_bytes=settings.max_source_bytes,
        timeout=settings.fetch_timeout,
    )
    signer = LinkSigner(settings.signing_key.get_secret_value(), default_ttl=settings.link_ttl)
    yield MediaHandlers(
        sources=sources,
        storage=storage,
        settings=settings,
        signer=signer,
        budget=images.MemoryBudget(settings.memory_budget_mb * 2**20),
    )
    yield video.VideoTools(sources=sources, storage=storage, signer=signer, settings=settings)


#: What this worker serves: the ``media`` queue.
SPEC = WorkerSpec(
    name="media",
    jobs=(
        handlers.resize,
        handlers.thumbnail,
        handlers.avatar,
        handlers.optimize,
        handlers.batch,
        handlers.cleanup,
        *video.JOBS,
    ),
    settings=MediaSettings,
    resources=resources,
)


def setup() -> RabbitmqBroker:
    """What ``dramatiq offload_media.worker:setup`` calls: glibc's allocator tuned for images, then the spec."""
    tune_allocator()
    return SPEC.setup()
