"""Worker entry point: ``dramatiq offload_reports.worker:setup --queues reports system``."""

from __future__ import annotations

from dramatiq.brokers.rabbitmq import RabbitmqBroker

from offload.contracts import REGISTRY
from offload.publish import Publisher
from offload.publish.publisher import settings_url_policy
from offload.settings import load_settings
from offload.signing import LinkSigner
from offload.storage import build_storage
from offload.worker import build_worker
from offload.worker.priority import yield_cpu
from offload_reports.handlers import ReportHandlers
from offload_reports.ops import OpsHandlers
from offload_reports.settings import ReportSettings
from offload_reports.sources import UrlFetcher

#: The domain queues this worker consumes (besides ``system``).
QUEUES = ("reports",)
#: The job types this worker serves (besides the system ones).
JOB_TYPES = ("report.build", "stats.aggregate", "maintenance.cleanup", "report.daily_ops")


def build(settings: ReportSettings, *, publisher: Publisher | None = None) -> RabbitmqBroker:
    """This worker's broker and actors, from explicit settings (tests pass their own)."""
    publisher = publisher or Publisher.from_settings(settings, pin_connections=True)
    storage = build_storage(settings)
    signer = LinkSigner(settings.signing_key.get_secret_value(), default_ttl=settings.link_ttl)
    handlers = ReportHandlers(
        storage=storage,
        signer=signer,
        settings=settings,
        fetcher=UrlFetcher(
            settings_url_policy(settings),
            max_bytes=settings.report_source_max_bytes,
            deadline=settings.report_source_timeout,
            min_rate=settings.report_source_min_rate,
        ),
        publisher=publisher,
    )
    ops = OpsHandlers(
        store=publisher.store,
        storage=storage,
        signer=signer,
        registry=REGISTRY,
        broker_url=settings.broker_url.get_secret_value(),
        reports=handlers,
    )
    return build_worker(
        settings, queues=QUEUES, handlers={**handlers.handlers(), **ops.handlers()}, publisher=publisher
    )


def setup() -> RabbitmqBroker:
    """Build this worker's broker and actors; the Dramatiq CLI calls it in each worker process."""
    settings = load_settings(ReportSettings)
    yield_cpu(settings.worker_nice)
    return build(settings)
