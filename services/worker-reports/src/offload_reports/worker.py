"""The reports worker: ``dramatiq offload_reports.worker:setup`` serves reports, statistics and maintenance."""

from __future__ import annotations

from collections.abc import Iterator

from offload.jobs import WorkerSpec
from offload.publish import Publisher
from offload.publish.publisher import settings_url_policy
from offload.signing import LinkSigner
from offload.storage import build_storage
from offload.worker import Resources
from offload_reports import handlers, ops
from offload_reports.handlers import ReportHandlers
from offload_reports.ops import OpsHandlers
from offload_reports.settings import ReportSettings
from offload_reports.sources import UrlFetcher


def resources(settings: ReportSettings, publisher: Publisher, _given: Resources) -> Iterator[object]:
    """The storage client, signer and row fetcher the report and operations handlers share."""
    storage = build_storage(settings)
    signer = LinkSigner(settings.signing_key.get_secret_value(), default_ttl=settings.link_ttl)
    reports = ReportHandlers(
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
    yield reports
    yield OpsHandlers(
        store=publisher.store,
        storage=storage,
        signer=signer,
        registry=publisher.preparer.registry,
        broker_url=settings.broker_url.get_secret_value(),
        reports=reports,
    )


#: What this worker serves: the ``reports`` queue.
SPEC = WorkerSpec(
    name="reports",
    jobs=(handlers.build, ops.stats_aggregate, ops.maintenance_cleanup, ops.report_daily_ops),
    settings=ReportSettings,
    resources=resources,
)
#: What ``dramatiq offload_reports.worker:setup`` calls in each worker process.
setup = SPEC.setup
