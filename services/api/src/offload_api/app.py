"""The app factory: ``create_app()`` builds the API; ``wsgi.py`` is the only caller at import."""

from __future__ import annotations

from flask import Flask

from offload.api_keys import env_grants
from offload.contracts import Registry
from offload.logs import configure_logging
from offload.publish import Publisher
from offload.settings import Settings, load_settings
from offload.signing import LinkSigner, ReadTokens
from offload.status.api_keys import ApiKeyStore
from offload.status.audit import AuditLog
from offload.status.pauses import Pauses
from offload.storage import build_storage
from offload.tracing import configure_tracing
from offload_api import admin, browser, errors
from offload_api import metrics as api_metrics
from offload_api.admission import Admission
from offload_api.collectors import JobStateCollector, PauseCollector, QueueCollector, ScheduleCollector
from offload_api.extension import Services, init_app
from offload_api.key_ring import KeyRing
from offload_api.views import (
    audit_log,
    batches,
    dead_letters,
    events,
    feed,
    files,
    flows,
    health,
    jobs,
    keys,
    meta,
    operations,
    ops,
    push,
    push_demo,
    queues,
    schedules,
    tokens,
    webhooks,
)


def create_app(
    settings: Settings | None = None, *, publisher: Publisher | None = None, registry: Registry | None = None
) -> Flask:
    """Build the HTTP API. Production passes nothing; tests pass settings (and may pass a publisher).

    The API serves the job types of the publisher's registry: by default the live catalogue, so a
    type a worker registers is accepted, listed and documented within seconds, with no restart.

    Raises:
        ConfigError: the settings are invalid.
    """
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing("offload-api")
    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        OFFLOAD_MAX_BATCH_JOBS=settings.max_batch_jobs,
        JSON_SORT_KEYS=False,
    )
    if settings.public_url:
        app.config["SERVER_NAME"] = None
    app.json.sort_keys = False  # type: ignore[attr-defined]
    publisher = publisher or Publisher.from_settings(settings, registry=registry)
    registry = publisher.preparer.registry
    ring = KeyRing(ApiKeyStore(publisher.store), env_grants(settings.keys))
    services = Services(
        settings=settings,
        publisher=publisher,
        registry=registry,
        keys=ring.table,
        key_ring=ring,
        audit=AuditLog(publisher.store, retention=settings.audit_retention, max_entries=settings.audit_max_entries),
        storage=build_storage(settings),
        signer=LinkSigner(settings.signing_key.get_secret_value(), default_ttl=settings.link_ttl),
        tokens=ReadTokens(settings.signing_key.get_secret_value()),
        metrics=api_metrics.ApiMetrics(
            [
                QueueCollector(settings.broker_url.get_secret_value(), registry),
                JobStateCollector(publisher.store),
                PauseCollector(Pauses(publisher.store), registry),
                ScheduleCollector(publisher.store, settings.timezone),
            ]
        )
        if settings.metrics
        else None,
    )
    init_app(app, services)
    errors.register_error_handlers(app)
    browser.install(app, settings)
    blueprints = (
        jobs.bp,
        tokens.bp,
        events.bp,
        feed.bp,
        batches.bp,
        flows.bp,
        files.bp,
        webhooks.bp,
        push.bp,
        meta.bp,
        ops.bp,
        queues.bp,
        dead_letters.bp,
        operations.bp,
        schedules.bp,
        keys.bp,
        audit_log.bp,
        health.bp,
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    if settings.env != "production":
        app.register_blueprint(push_demo.bp)  # a development page: never served in production
    if services.metrics is not None:
        api_metrics.install(app, services.metrics)
    admin.install(app, settings)
    app.wsgi_app = Admission.from_settings(  # type: ignore[method-assign]
        app.wsgi_app,
        settings,
        services.keys,
        on_shed=services.metrics.count_shed if services.metrics is not None else None,
        store=publisher.store,
    )
    return app
