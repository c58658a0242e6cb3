"""The Python SDK: submit jobs by type name, read and wait for their records.

This is the face the HTTP API and other services use. It validates a submission against the
job-type catalogue (:mod:`offload.submission`), then hands it to the submit sequence
(:mod:`offload.publish.sequence`: quota held, record written, message confirmed, or all undone);
:mod:`offload.publish.wiring` builds one from settings.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from offload import problems
from offload.contracts import BUILT_IN, JobContract, Registry
from offload.errors import BrokerUnavailable, ValidationFailed
from offload.flows import new_flow_id, plan_batch
from offload.publish.flows import Flows, submit_flow
from offload.publish.results import BatchSubmitted, FlowSubmitted, Submitted
from offload.publish.sequence import SubmitSequence
from offload.publish.transport import Transport
from offload.publish.waiting import wait_until_ended
from offload.settings import Settings
from offload.status import BatchStore, JobRecord, StatusStore, redis_errors
from offload.submission import PreparedJob, Preparer
from offload.urls import UrlPolicy
from offload.wire import WireMessage

__all__ = ["BatchSubmitted", "FlowSubmitted", "Publisher", "Submitted"]


class Publisher:
    """Validate, record and publish jobs by type name; never imports a worker.

    Args:
        store: the job status store.
        preparer: validates submissions against the job-type catalogue.
        sequence: records and publishes what the preparer accepted.
    """

    def __init__(self, *, store: StatusStore, preparer: Preparer, sequence: SubmitSequence) -> None:
        self.store = store
        self.preparer = preparer
        self.sequence = sequence
        self.batches = BatchStore(store, ttl=store.retention.failed)
        #: Flows of jobs: submit one, read, wait for and cancel it (:class:`offload.publish.flows.Flows`).
        self.flows = Flows(store, preparer, sequence)

    @property
    def transport(self) -> Transport:
        """The broker this publisher hands messages to."""
        return self.sequence.transport

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
        """Build the publisher a process needs from its settings (:func:`offload.publish.wiring.build_publisher`)."""
        from offload.publish.wiring import build_publisher

        return build_publisher(
            settings, registry=registry, local=local, url_policy=url_policy, pin_connections=pin_connections
        )

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
        ``callback_url``, ``then``, ``tags`` (to list and follow the job by) and ``metadata``.

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

    def submit_many(self, bodies: Sequence[Any], *, tenant: str) -> list[Submitted]:
        """Validate every submission first (all or none), then record and publish them together, each on its own.

        What BullMQ's ``addBulk`` does: independent jobs, one round of broker confirms, no batch
        around them (no fan-in, no completion event: :meth:`submit_batch` gives those, at the cost
        of each job's ending being counted in its batch).

        Raises:
            ValidationFailed: one submission is invalid; the field path starts with ``jobs[i]``.
            UnknownJobType: a job's type is unknown.
            QuotaExceeded: a quota is used up (nothing was recorded).
            BrokerUnavailable: a message was not confirmed (that job was withdrawn; the others stand).
            StatusStoreUnavailable: Redis is unavailable.
        """
        prepared = []
        for index, body in enumerate(bodies):
            try:
                prepared.append(self.preparer.prepare(body, tenant=tenant))
            except ValidationFailed as exc:
                fields = problems.nested(exc.errors, f"jobs[{index}]")
                raise ValidationFailed(f"jobs[{index}]: {exc.message}", errors=fields, code=exc.code) from None
        errors = self.sequence.enqueue_batch(prepared)
        failed = [error for error in errors if error is not None]
        if failed:
            raise failed[0]
        return [Submitted(p.job_id, "scheduled" if p.delay else "queued") for p in prepared]

    def submit_batch(self, bodies: Sequence[Any], *, tenant: str, then: Any = None) -> BatchSubmitted:
        """Validate every submission first (all or none), then record and publish them together.

        A batch is a flow whose jobs need nothing (see :func:`offload.flows.plan_batch`); with
        ``then`` (a job submission), that job runs once every job of the batch has ended, and
        reads each one's result or failure in ``ctx.child_results`` (by index).

        Raises:
            ValidationFailed: one submission is invalid; the field path starts with ``jobs[i]`` (or ``then``).
            UnknownJobType: a job's type is unknown.
            QuotaExceeded: a quota is used up (nothing was recorded).
            BrokerUnavailable: some messages were not confirmed; the batch was withdrawn.
            StatusStoreUnavailable: Redis is unavailable.
        """
        flow = plan_batch(bodies, then=then, preparer=self.preparer, tenant=tenant, flow_id=new_flow_id(tenant, None))
        submitted = submit_flow(self.sequence, flow, kind="batch")
        self.batches.remember(flow.flow_id)
        jobs = [Submitted(node.job_id, node.state) for node in submitted.nodes if node.name != "then"]
        then_job = next((Submitted(node.job_id, node.state) for node in submitted.nodes if node.name == "then"), None)
        return BatchSubmitted(submitted.flow_id, jobs, then_job)

    def enqueue(
        self, prepared: PreparedJob, *, idempotency_key: str | None = None, deadline: float | None = None
    ) -> Submitted:
        """Record and publish one job the preparer accepted (see :meth:`SubmitSequence.enqueue`).

        Raises:
            QuotaExceeded: the tenant's quota for the type is used up.
            Conflict: ``idempotency_key`` was used with another submission.
            BrokerUnavailable: RabbitMQ did not take the message (the record is withdrawn).
            StatusStoreUnavailable: Redis is unavailable (nothing was published).
        """
        return self.sequence.enqueue(prepared, idempotency_key=idempotency_key, deadline=deadline)

    def enqueue_many(self, prepared: Sequence[PreparedJob]) -> list[BrokerUnavailable | None]:
        """Record and publish follow-up work the system queues itself (see :meth:`SubmitSequence.enqueue_many`).

        Raises:
            StatusStoreUnavailable: Redis is unavailable (jobs recorded before that stay queued).
        """
        return self.sequence.enqueue_many(prepared)

    def connect(self) -> None:
        """Open the broker connection in the background and declare every job queue on it.

        Then the first submissions wait for neither (see :meth:`ConfirmingPublisher.connect`).
        """
        self.transport.connect(self.preparer.registry.queues)

    def republish(self, message: bytes, *, timeout: float | None = None) -> None:
        """Publish a stored message again (delayed jobs coming due, retries, manual retries).

        Raises:
            BrokerUnavailable: RabbitMQ did not confirm it.
        """
        wire = WireMessage.decode(message)
        self.transport.publish(
            wire.queue, wire.body, priority=wire.priority, timeout=timeout or self.sequence.publish_timeout
        )

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
        return wait_until_ended(
            lambda: self.store.queries.subscribe(job_id),
            lambda: self.store.queries.get(job_id),
            lambda record: record.state.terminal,
            timeout,
        )

    def watch(self, job_id: str, *, timeout: float = 300.0, tenant: str | None = None) -> Iterator[JobRecord]:
        """Yield the job's record now and again each time it changes, until it ends or ``timeout`` passes.

        What a service streams to its own users (a shop's order page over SSE) without giving them
        an API key: it follows the job's events channel, as :meth:`wait` does, and yields a record
        only when its ``seq`` moved on (a state change, progress, a log line: an event of its
        ``/v1/jobs/{id}/events`` stream); changes closer together may be seen as one. The last
        record yielded is terminal unless the timeout came first. Yields nothing for an
        unknown job (or, with ``tenant``, another tenant's).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        deadline = time.monotonic() + timeout
        with redis_errors():
            pubsub = self.store.queries.subscribe(job_id)
            try:
                last = -1
                record = self.store.queries.get(job_id, tenant=tenant)
                while record is not None:
                    if record.seq != last:
                        last = record.seq
                        yield record
                    if record.state.terminal or time.monotonic() >= deadline:
                        return
                    pubsub.get_message(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                    record = self.store.queries.get(job_id, tenant=tenant)
            finally:
                pubsub.close()

    def close(self) -> None:
        """Close the broker connection and the Redis connection pool."""
        self.transport.close()
        self.store.close()


def http_links_allowed(settings: Settings) -> bool:
    """Whether emails may link to plain ``http``: outside production, or where Offload's own public URL is http.

    A deployment that serves its own download links on http (``OFFLOAD_PUBLIC_URL=http://...``,
    as the compose file's default does) must be able to send them.
    """
    return settings.env != "production" or settings.public_url.startswith("http://")


def settings_url_policy(settings: Settings) -> UrlPolicy:
    """The outbound URL policy for these settings (plain http only outside production)."""
    return UrlPolicy(allow_http=settings.env != "production", allow_hosts=tuple(settings.url_allow_hosts))
