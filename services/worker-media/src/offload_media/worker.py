"""Worker entry point: ``dramatiq offload_media.worker:setup --queues media system``."""

from __future__ import annotations

from dramatiq.brokers.rabbitmq import RabbitmqBroker

from offload.publish import Publisher
from offload.publish.publisher import settings_url_policy
from offload.settings import load_settings
from offload.signing import LinkSigner
from offload.storage import build_storage
from offload.worker import build_worker
from offload.worker.priority import yield_cpu
from offload_media import images
from offload_media.handlers import MediaHandlers
from offload_media.memory import tune_allocator
from offload_media.settings import MediaSettings
from offload_media.sources import Sources

#: The domain queues this worker consumes (besides ``system``).
QUEUES = ("media",)
#: The job types this worker serves (besides the system ones).
JOB_TYPES = ("image.resize", "image.thumbnail", "image.avatar", "image.optimize", "image.batch", "storage.cleanup")


def build(settings: MediaSettings, *, publisher: Publisher | None = None) -> RabbitmqBroker:
    """This worker's broker and actors, from explicit settings (tests pass their own)."""
    publisher = publisher or Publisher.from_settings(settings, pin_connections=True)
    storage = build_storage(settings)
    sources = Sources(
        store=publisher.store,
        storage=storage,
        url_policy=settings_url_policy(settings),
        max_bytes=settings.max_source_bytes,
        timeout=settings.fetch_timeout,
    )
    handlers = MediaHandlers(
        sources=sources,
        storage=storage,
        settings=settings,
        signer=LinkSigner(settings.signing_key.get_secret_value(), default_ttl=settings.link_ttl),
        budget=images.MemoryBudget(settings.memory_budget_mb * 2**20),
    )
    return build_worker(settings, queues=QUEUES, handlers=handlers.handlers(), publisher=publisher)


def setup() -> RabbitmqBroker:
    """Build this worker's broker and actors; the Dramatiq CLI calls it in each worker process."""
    tune_allocator()
    settings = load_settings(MediaSettings)
    yield_cpu(settings.worker_nice)
    return build(settings)
