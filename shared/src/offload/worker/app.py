"""The composition root of every worker: a :class:`~offload.jobs.WorkerSpec` made into a broker.

``dramatiq offload_email.worker:setup`` imports the service, whose ``setup`` (its spec's) calls
:func:`build_worker`: one actor per job type of the spec and per system job type, the
middleware every worker runs, and the registration of its contracts in the catalogue. Nothing
connects at import.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import CurrentMessage, Middleware, Retries, ShutdownNotifications, TimeLimit

from offload.broker import build_broker
from offload.contracts import BUILT_IN, JobContract, Registry
from offload.errors import ConfigError, DependencyError, JobFailed
from offload.logs import configure_logging
from offload.publish import Publisher
from offload.settings import Settings
from offload.status.catalogue import ContractStore
from offload.status.pauses import Pauses
from offload.status.slots import Slots
from offload.tracing import configure_tracing
from offload.wire_checks import WireChecks
from offload.worker.adoption import Adopter, UnservedMessages
from offload.worker.context import Resources
from offload.worker.end_writer import EndWriter, EndWriterFlush
from offload.worker.hard_limit import HardTimeLimit
from offload.worker.log_context import JobLogContext
from offload.worker.memory_guard import MemoryGuard
from offload.worker.metrics import JobMetrics, batched_prometheus
from offload.worker.promoter import DuePromoter, PromoterMiddleware
from offload.worker.registration import Heartbeat, cards_for, register
from offload.worker.runtime import Runtime
from offload.worker.slots import SlotKeeper
from offload.worker.start_combiner import StartCombiner
from offload.worker.system import SYSTEM_JOBS

if TYPE_CHECKING:
    from offload.jobs import JobType, WorkerSpec

logger = logging.getLogger(__name__)

#: Dramatiq retries a message itself only while Redis or RabbitMQ is unreachable: this many times,
#: with backoff between these bounds (milliseconds; far below ``consumer_timeout``).
INFRA_RETRIES = 50
INFRA_MIN_BACKOFF = 1_000
INFRA_MAX_BACKOFF = 30_000


def _retry_when(retries: int, exception: BaseException) -> bool:
    return isinstance(exception, DependencyError) and retries < INFRA_RETRIES


def check_contract(contract: JobContract, settings: Settings) -> None:
    """Refuse contracts whose time limit or backoff could outlive RabbitMQ's ``consumer_timeout`` (D3).

    Raises:
        ConfigError: the contract would be redelivered while still running.
    """
    limit = settings.consumer_timeout
    if contract.time_limit + settings.hard_limit_grace >= limit or contract.retry.max_backoff >= limit:
        raise ConfigError(
            f"Job type {contract.name!r} has a time limit (plus OFFLOAD_HARD_LIMIT_GRACE) or backoff of at least "
            f"OFFLOAD_CONSUMER_TIMEOUT ({limit} s)."
        )


def _served_jobs(spec: WorkerSpec[Any]) -> dict[str, JobType[Any, Any]]:
    jobs = {job_type.name: job_type for job_type in SYSTEM_JOBS}
    jobs.update({job_type.name: job_type for job_type in spec.jobs})
    return jobs


def served_contracts(spec: WorkerSpec[Any], settings: Settings) -> Registry:
    """The contracts a worker of ``spec`` serves: the system ones and its own.

    Each carries the submission policy the worker's settings give
    (:meth:`~offload.settings.WorkerSettings.submission_policy`), which its cards register.
    """
    return Registry(
        replace(job.contract, policy=settings.submission_policy(job.contract)) for job in _served_jobs(spec).values()
    )


def spec_cards(spec: WorkerSpec[Any], contracts: Registry) -> list[dict[str, Any]]:
    """The catalogue cards a worker of ``spec`` registers for ``contracts`` (system ones as ``system``).

    Raises:
        ConfigError: a card could not be registered (see :func:`~offload.worker.registration.cards_for`).
    """
    system = {job_type.name for job_type in SYSTEM_JOBS}
    return cards_for([c for c in contracts if c.name in system], service="system") + cards_for(
        [c for c in contracts if c.name not in system], service=spec.name
    )


def build_worker(
    spec: WorkerSpec[Any],
    settings: Settings,
    *,
    publisher: Publisher | None = None,
    resources: Iterable[object] = (),
) -> RabbitmqBroker:
    """Build the Dramatiq broker of one worker: an actor for each job type of ``spec`` and each system one.

    Its contracts are registered in the catalogue (so the API accepts them within a second or
    two), and a heartbeat tells the catalogue this process serves them. ``resources`` are objects
    a test hands in (a mailer): the spec's builder uses them instead of making its own.

    Raises:
        ConfigError: a contract breaks the ``consumer_timeout`` rule, or a live worker registered
            one of its names with another schema.
    """
    jobs = _served_jobs(spec)
    registry = served_contracts(spec, settings)
    for contract in registry:
        check_contract(contract, settings)
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing(f"offload-worker-{spec.name}")
    publisher = publisher or Publisher.from_settings(settings, local=[*BUILT_IN, *registry], pin_connections=True)
    given = Resources(resources)
    shared = given + spec.resources(settings, publisher, given)
    catalogue = ContractStore(publisher.store)
    cards = spec_cards(spec, registry)
    heartbeat = Heartbeat(catalogue, cards, registered=register(catalogue, cards))
    pauses = Pauses(publisher.store)
    metrics = JobMetrics()
    slots = SlotKeeper(
        Slots(publisher.store),
        publisher.store,
        publisher,
        registry,
        settings.concurrency_limits,
        metrics=metrics,
    )
    promoter = PromoterMiddleware(
        DuePromoter(
            publisher.store,
            publisher,
            hard_limit_grace=settings.hard_limit_grace,
            slots=slots,
            pauses=pauses,
            metrics=metrics,
        )
    )
    access = settings.wire_access
    checks = WireChecks(publisher.preparer, access, max_message_bytes=settings.max_body_bytes)
    adopter = Adopter(publisher, checks, metrics=metrics)
    end_writer = EndWriter(publisher.store)
    max_unfinished = settings.max_unfinished_attempts
    starts = StartCombiner(lambda ids: publisher.store.lifecycle.start_many(ids, max_unfinished=max_unfinished))
    runtime = Runtime(
        store=publisher.store,
        publisher=publisher,
        max_unfinished=settings.max_unfinished_attempts,
        on_outbox=promoter.nudge,
        metrics=metrics,
        slots=slots,
        pauses=pauses,
        adopter=adopter,
        backoff_scale=settings.retry_backoff_scale,
        resources=shared,
        end_writer=end_writer,
        starts=starts,
    )
    broker = build_broker(
        settings.broker_url.get_secret_value(),
        trusted_users=access.trusted,
        middleware=[
            JobLogContext(),  # first in, last out: Dramatiq runs "after" hooks in reverse order
            TimeLimit(),
            HardTimeLimit(grace=settings.hard_limit_grace),
            MemoryGuard(limit_mb=settings.worker_max_memory_mb, on_recycle=lambda: metrics.recycled("memory")),
            ShutdownNotifications(notify_shutdown=False),
            Retries(
                max_retries=0, min_backoff=INFRA_MIN_BACKOFF, max_backoff=INFRA_MAX_BACKOFF, retry_when=_retry_when
            ),
            CurrentMessage(),
            EndWriterFlush(end_writer),
            UnservedMessages(adopter, publisher.preparer.registry),  # the catalogue: knows the right queue
            promoter,
            heartbeat,
            # "after" hooks run last first: Dramatiq's flushes the buffer before it marks its files dead
            *([metrics, _dramatiq_prometheus(settings, metrics)] if settings.metrics else []),
        ],
    )
    broker.ack_gate = end_writer.gate
    for job_type in jobs.values():
        declare_actor(broker, job_type.contract, runtime.actor_fn(job_type.contract, job_type.handler))
    dramatiq.set_broker(broker)
    return broker


def _dramatiq_prometheus(settings: Settings, metrics: JobMetrics | None = None) -> Middleware:
    """Dramatiq's Prometheus middleware, refusing to serve metrics on every interface by default.

    Its per-message updates go through ``metrics``' buffer (``offload.worker.metric_buffer``).

    Its exposition server listens on ``dramatiq_prom_host``, read when Dramatiq is imported (so
    before any code of ours runs) and ``0.0.0.0`` unless set, with no authentication
    (reliability-security.md D9). The launchers set it (``make up``: 127.0.0.1; compose and
    Kubernetes: the container's address); a worker started without it warns, and in production
    refuses to start.

    Raises:
        ConfigError: in production, ``dramatiq_prom_host`` is not set.
    """
    from dramatiq.middleware.prometheus import HTTP_HOST, HTTP_PORT

    if "dramatiq_prom_host" not in os.environ:
        problem = (
            f"Worker metrics would listen on {HTTP_HOST}:{HTTP_PORT} without authentication; set "
            "dramatiq_prom_host (127.0.0.1, or the address Prometheus scrapes) or OFFLOAD_METRICS=false."
        )
        if settings.env == "production":
            raise ConfigError(problem)
        logger.warning(problem)
    return batched_prometheus((metrics or JobMetrics()).buffer)


def declare_actor(broker: RabbitmqBroker, contract: JobContract, fn: Any) -> dramatiq.Actor[Any, Any]:
    """Register ``fn`` as the actor for ``contract``: the one place that calls ``dramatiq.actor``."""
    register = dramatiq.actor(
        broker=broker,
        actor_name=contract.name,
        queue_name=contract.queue,
        time_limit=int(contract.time_limit * 1000),
        throws=(JobFailed,),
    )
    return register(fn)
