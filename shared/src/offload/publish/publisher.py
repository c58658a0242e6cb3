"""The publisher: submission in, job record written, message confirmed, job id out.

This is the path behind ``POST /v1/jobs`` and the Python SDK other services use. Order matters
(reliability-security.md F5, F8): the record is written first, so a job is never on the broker
without a readable state; if the broker then does not confirm, the record is removed again (with a
tombstone that makes a late-arriving message be dropped), so a client that got 503 never finds a
job stuck in ``queued``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from offload import problems
from offload.contracts import BUILT_IN, JobContract, Registry
from offload.errors import BrokerUnavailable, Conflict, StatusStoreUnavailable, ValidationFailed
from offload.publish.amqp import ConfirmingPublisher
from offload.quotas import QuotaExceeded, Quotas
from offload.settings import Settings
from offload.status import BatchStore, JobRecord, Retention, StatusStore, now_ms, redis_errors
from offload.status.catalogue import ContractStore
from offload.submission import DomainAllowList, PreparedJob, Preparer
from offload.urls import UrlPolicy
from offload.wire import WireMessage, encode_message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submitted:
    """The answer to a submission: the job's id and state; ``replayed`` when an idempotency key matched."""

    job_id: str
    state: str
    replayed: bool = False


@dataclass(frozen=True)
class BatchSubmitted:
    """The answer to a batch submission."""

    batch_id: str
    jobs: list[Submitted]


class Publisher:
    """Validate, record and publish jobs by type name; never imports a worker.

    Args:
        store: the job status store.
        amqp: the confirming AMQP publisher.
        preparer: validates submissions against the contract registry.
        publish_timeout: seconds a publish may take before it counts as failed.
        idempotency_ttl: seconds an ``Idempotency-Key`` is remembered.
    """

    def __init__(
        self,
        *,
        store: StatusStore,
        amqp: ConfirmingPublisher,
        preparer: Preparer,
        publish_timeout: float = 2.0,
        idempotency_ttl: int = 86_400,
        quotas: Quotas | None = None,
    ) -> None:
        self.store = store
        self.amqp = amqp
        self.preparer = preparer
        self.publish_timeout = publish_timeout
        self.idempotency_ttl = idempotency_ttl
        self.quotas = quotas or Quotas(store.client, prefix=store.prefix, limits={})
        self.batches = BatchStore(store, ttl=store.retention.failed)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        registry: Registry | None = None,
        local: Iterable[JobContract] = BUILT_IN,
        url_policy: UrlPolicy | None = None,
        pin_connections: bool = False,
    ) -> Publisher:
        """Build the publisher a process needs from its settings (one per process).

        It submits the job types of the live catalogue (:class:`~offload.catalogue.Catalogue`):
        the ``local`` contracts this process imports, and every type a worker registered; a given
        ``registry`` replaces the catalogue. ``pin_connections`` gives each thread its own Redis
        connection for state changes (workers).
        """
        from offload.broker import queue_arguments  # the broker module imports dramatiq; keep it lazy
        from offload.catalogue import Catalogue

        store = StatusStore.from_url(
            settings.redis_url.get_secret_value(),
            prefix=settings.redis_prefix,
            retention=Retention(settings.retention_succeeded, settings.retention_failed),
            pin_connections=pin_connections,
        )
        amqp = ConfirmingPublisher(
            settings.broker_url.get_secret_value(), queue_arguments=queue_arguments, timeout=settings.publish_timeout
        )
        if registry is None:
            known = {contract.name: contract for contract in local}
            registry = Catalogue(ContractStore(store.client, settings.redis_prefix), known.values())
        preparer = Preparer(
            registry=registry,
            url_policy=url_policy or settings_url_policy(settings),
            max_delay=settings.max_delay,
            email_domains=DomainAllowList.of(settings.email_allowed_domains),
            http_links=http_links_allowed(settings),
        )
        quotas = Quotas(store.client, prefix=settings.redis_prefix, limits={"email": settings.email_quota_per_hour})
        return cls(
            store=store,
            amqp=amqp,
            preparer=preparer,
            publish_timeout=settings.publish_timeout,
            idempotency_ttl=settings.idempotency_ttl,
            quotas=quotas,
        )

    # -- the SDK -----------------------------------------------------------------------------

    def publish(
        self,
        job_type: str,
        payload: dict[str, Any] | None = None,
        *,
        tenant: str = "default",
        idempotency_key: str | None = None,
        **options: Any,
    ) -> Submitted:
        """Submit one job by type name, e.g. ``publish("system.sleep", {"ms": 500}, tenant="acme")``.

        ``options`` are those of the HTTP API: ``priority``, ``delay``, ``max_retries``,
        ``callback_url``, ``then``.

        Raises:
            ValidationFailed: the payload or an option is invalid.
            UnknownJobType: no such job type.
            Conflict: ``idempotency_key`` was used with another submission.
            BrokerUnavailable: RabbitMQ did not take the message (nothing is left behind).
            StatusStoreUnavailable: Redis is unavailable (nothing was published).
        """
        body = {"type": job_type, "payload": payload or {}, "options": options}
        return self.submit(body, tenant=tenant, idempotency_key=idempotency_key)

    def submit(
        self, body: Any, *, tenant: str, idempotency_key: str | None = None, deadline: float | None = None
    ) -> Submitted:
        """Submit a raw ``{"type", "payload", "options"}`` document (what the HTTP API receives).

        ``deadline`` (a :func:`time.monotonic` moment) is when the caller must have its answer: a
        confirm still missing then is not waited for (see :meth:`enqueue`).

        Raises:
            ValidationFailed: the payload or an option is invalid.
            UnknownJobType: no such job type.
            Conflict: ``idempotency_key`` was used with another submission.
            BrokerUnavailable: RabbitMQ did not take the message (nothing is left behind).
            StatusStoreUnavailable: Redis is unavailable (nothing was published).
        """
        prepared = self.preparer.prepare(body, tenant=tenant)
        return self.enqueue(prepared, idempotency_key=idempotency_key, deadline=deadline)

    def submit_batch(self, bodies: Sequence[Any], *, tenant: str) -> BatchSubmitted:
        """Validate every submission first (all or none), then record and publish them together.

        Raises:
            ValidationFailed: one submission is invalid; the field path starts with ``jobs[i]``.
            BrokerUnavailable: some messages were not confirmed; those jobs were withdrawn.
            StatusStoreUnavailable: Redis is unavailable.
        """
        batch_id = str(uuid.uuid4())
        prepared = []
        for index, body in enumerate(bodies):
            try:
                prepared.append(self.preparer.prepare(body, tenant=tenant, batch_id=batch_id))
            except ValidationFailed as exc:
                fields = problems.nested(exc.errors, f"jobs[{index}]")
                raise ValidationFailed(f"jobs[{index}]: {exc.message}", errors=fields, code=exc.code) from None
        with redis_errors():
            self.take_quota(prepared)
        self.batches.create(batch_id, tenant=tenant, job_ids=[p.job_id for p in prepared])
        errors = self._record_and_publish(prepared)
        failed = [(p, err) for p, err in zip(prepared, errors, strict=True) if err is not None]
        if failed:
            self.give_back_quota([p for p, _ in failed])
            raise failed[0][1]
        return BatchSubmitted(batch_id, [Submitted(p.job_id, "scheduled" if p.delay else "queued") for p in prepared])

    def enqueue_many(self, prepared: Sequence[PreparedJob]) -> list[BrokerUnavailable | None]:
        """Record and publish several prepared jobs with one round of broker confirms.

        For follow-up work the system queues itself (webhook deliveries): no quotas, no idempotency
        keys; a job whose (deterministic) id is already recorded is left as it is. Returns, per job,
        None when it is queued, scheduled or already known, or the error that withdrew its record.

        Raises:
            StatusStoreUnavailable: Redis is unavailable (jobs recorded before that stay queued).
        """
        return self._record_and_publish(prepared)

    def _record_and_publish(self, prepared: Sequence[PreparedJob]) -> list[BrokerUnavailable | None]:
        """Write each record, publish the immediate ones together, withdraw the records RabbitMQ refused."""
        immediate = []
        for index, job in enumerate(prepared):
            body = self._record(job, None)
            if isinstance(body, bytes) and job.delay is None:  # an existing job (a replayed id) is not sent again
                immediate.append((index, job, body))
        sent = self.amqp.publish_many(
            [(p.contract.queue, body, p.priority.broker_priority) for _, p, body in immediate],
            timeout=self.publish_timeout,
        )
        errors: list[BrokerUnavailable | None] = [None] * len(prepared)
        for (index, job, _), error in zip(immediate, sent, strict=True):
            if error is not None and not self._withdraw(job, None):
                errors[index] = error
        return errors

    def enqueue(
        self, prepared: PreparedJob, *, idempotency_key: str | None = None, deadline: float | None = None
    ) -> Submitted:
        """Record and publish one prepared job (the core of :meth:`submit`).

        With a ``deadline``, the broker's confirm is waited for only until then (and never longer
        than ``publish_timeout``). A job whose confirm is late is withdrawn like a refused one and
        the caller gets ``BrokerUnavailable`` in time; if the message reaches the queue after all,
        the worker finds the withdrawn record and drops it, so the job neither runs unannounced nor
        is lost after a 202. A broker that is merely slow thus costs a retry, never an answer later
        than the caller's deadline (issue 9, F14: 202s that waited 1.5 s on a busy broker's confirm).

        Raises:
            Conflict: ``idempotency_key`` was used with another submission.
            BrokerUnavailable: RabbitMQ did not take the message (the record is withdrawn).
            StatusStoreUnavailable: Redis is unavailable (nothing was published).
        """
        if prepared.delay is None and idempotency_key is None:
            self.amqp.refuse_if_full(prepared.contract.queue)  # before any Redis work for a sure refusal
        with redis_errors():
            self.take_quota([prepared])
        try:
            body = self._record(prepared, idempotency_key)
        except BaseException:
            self.give_back_quota([prepared])
            raise
        if isinstance(body, Submitted):
            self.give_back_quota([prepared])  # an idempotent replay costs nothing
            return body
        if prepared.delay is not None:
            return Submitted(prepared.job_id, "scheduled")
        wait = None if deadline is None else deadline - time.monotonic()
        try:
            self.amqp.publish(
                prepared.contract.queue,
                body,
                priority=prepared.priority.broker_priority,
                timeout=self.publish_timeout,
                wait=wait,
            )
        except BrokerUnavailable:
            if self._withdraw(prepared, idempotency_key):
                return Submitted(prepared.job_id, "queued")
            self.give_back_quota([prepared])
            raise
        return Submitted(prepared.job_id, "queued")

    def connect(self) -> None:
        """Open the broker connection in the background and declare every job queue on it.

        Then the first submissions wait for neither (see :meth:`ConfirmingPublisher.connect`).
        """
        self.amqp.connect(self.preparer.registry.queues)

    def republish(self, message: bytes, *, timeout: float | None = None) -> None:
        """Publish a stored message again (delayed jobs coming due, retries, manual retries).

        Raises:
            BrokerUnavailable: RabbitMQ did not confirm it.
        """
        wire = WireMessage.decode(message)
        self.amqp.publish(wire.queue, wire.body, priority=wire.priority, timeout=timeout or self.publish_timeout)

    def get(self, job_id: str, *, tenant: str | None = None) -> JobRecord | None:
        """The job's record (None if unknown or another tenant's).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        return self.store.queries.get(job_id, tenant=tenant)

    def wait(self, job_id: str, *, timeout: float = 30.0) -> JobRecord | None:
        """Block until the job ends (or ``timeout`` seconds pass) and return its record.

        Follows the job's events channel rather than polling, so it returns as soon as the job
        reaches ``succeeded``, ``failed``, ``cancelled`` or ``dead``. Returns the record as it is
        at the timeout if it has not ended, and None for an unknown job.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        deadline = time.monotonic() + timeout
        with redis_errors():
            pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(self.store.queries.events_channel(job_id))
                record = self.store.queries.get(job_id)
                while record is not None and not record.state.terminal and time.monotonic() < deadline:
                    pubsub.get_message(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                    record = self.store.queries.get(job_id)
                return record
            finally:
                pubsub.close()

    def close(self) -> None:
        """Close the broker connection and the Redis connection pool."""
        self.amqp.close()
        self.store.close()

    # -- internals ---------------------------------------------------------------------------

    def _record(self, prepared: PreparedJob, idempotency_key: str | None) -> bytes | Submitted:
        created_at = now_ms()
        payload = prepared.payload.model_dump(mode="json")
        body = encode_message(
            job_id=prepared.job_id,
            job_type=prepared.contract.name,
            queue=prepared.contract.queue,
            payload=payload,
            tenant=prepared.tenant,
            broker_priority=prepared.priority.broker_priority,
            timestamp_ms=created_at,
        )
        # The record keeps what the message is made of, not the message (offload.wire.stored_message).
        fields: dict[str, str | int] = {
            "tenant": prepared.tenant,
            "type": prepared.contract.name,
            "queue": prepared.contract.queue,
            "priority": prepared.priority.value,
            "max_retries": prepared.max_retries,
            "created_at": created_at,
            "payload": json.dumps(payload, separators=(",", ":")),
        }
        for name, value in (
            ("callback_url", prepared.callback_url),
            ("batch_id", prepared.batch_id),
            ("parent_id", prepared.parent_id),
            ("idempotency_key", idempotency_key),
        ):
            if value:
                fields[name] = value
        if prepared.follow_ups:
            fields["then"] = json.dumps([f.model_dump(mode="json") for f in prepared.follow_ups])
        scheduled_for = created_at + int(prepared.delay * 1000) if prepared.delay is not None else None
        created = self.store.lifecycle.create(
            prepared.job_id,
            fields,
            scheduled_for=scheduled_for,
            idempotency_key=idempotency_key,
            fingerprint=prepared.fingerprint,
            idempotency_ttl=self.idempotency_ttl,
        )
        if created.outcome == "conflict":
            raise Conflict(
                "This Idempotency-Key was already used with a different request.",
                code="idempotency_key_reused",
                job_id=created.job_id,
            )
        if created.outcome == "exists":
            record = self.store.queries.get(created.job_id)
            return Submitted(created.job_id, record.state.value if record else "queued", replayed=True)
        return body

    def take_quota(self, jobs: Sequence[PreparedJob]) -> None:
        """Count the jobs against their tenants' quotas, all or nothing.

        Raises:
            QuotaExceeded: one quota is used up (nothing stays counted).
        """
        taken: list[PreparedJob] = []
        try:
            for job in jobs:
                if job.contract.quota:
                    self.quotas.take(job.tenant, job.contract.quota, job.contract.units(job.payload))
                    taken.append(job)
        except QuotaExceeded:
            self.give_back_quota(taken)
            raise

    def give_back_quota(self, jobs: Sequence[PreparedJob]) -> None:
        """Return the quota units of jobs that did not go through after all (failures are logged)."""
        try:
            for job in jobs:
                if job.contract.quota:
                    self.quotas.give_back(job.tenant, job.contract.quota, job.contract.units(job.payload))
        except (redis.ConnectionError, redis.TimeoutError):
            logger.warning("Could not give back the quota of %d job(s); Redis is unavailable.", len(jobs))

    def _withdraw(self, prepared: PreparedJob, idempotency_key: str | None) -> bool:
        """Withdraw a job whose publish was not confirmed; True if a worker already took it.

        A taken job means the broker had the message and only its confirm went astray (a partition
        that heals mid-publish). Such a job is accepted after all: answering 503 for it would tell
        the client "not done" about a job that runs (an *unexpected* job, §6.0).
        """
        try:
            outcome = self.store.lifecycle.abort(
                prepared.job_id, tenant=prepared.tenant, idempotency_key=idempotency_key
            )
        except StatusStoreUnavailable:
            logger.error("Could not withdraw job %s after a failed publish; Redis is unavailable.", prepared.job_id)
            return False
        if outcome == "taken":
            logger.warning("Job %s was not confirmed by the broker, but a worker has it: accepted.", prepared.job_id)
        return outcome == "taken"


def http_links_allowed(settings: Settings) -> bool:
    """Whether emails may link to plain ``http``: outside production, or where Offload's own public URL is http.

    A deployment that serves its own download links on http (``OFFLOAD_PUBLIC_URL=http://...``,
    as the compose file's default does) must be able to send them.
    """
    return settings.env != "production" or settings.public_url.startswith("http://")


def settings_url_policy(settings: Settings) -> UrlPolicy:
    """The outbound URL policy for these settings (plain http only outside production)."""
    return UrlPolicy(allow_http=settings.env != "production", allow_hosts=tuple(settings.url_allow_hosts))
