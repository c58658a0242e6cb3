"""A pytest plugin for testing job types as Offload tests its own: real RabbitMQ, real Redis.

Installed with the ``offload`` library and loaded by pytest on its own (entry point ``pytest11``),
it gives a worker package's tests these fixtures:

- ``offload_settings``: settings for a test vhost and Redis database (``OFFLOAD_TEST_BROKER_URL``,
  ``OFFLOAD_TEST_REDIS_URL``; by default ``offload_test`` on 127.0.0.1 and Redis db 15), loopback
  URLs allowed. The Redis database is flushed after each test, and never touched if it holds
  data that is not a test's.
- ``offload_worker``: ``with offload_worker(SPEC) as publisher:`` runs the spec's actors in a
  Dramatiq worker in this process and gives a publisher that knows its job types.
- ``offload_wait``: ``offload_wait(publisher, job_id, "succeeded")`` waits for one of the states
  and returns the record.

Example::

    def test_wordcount(offload_worker, offload_wait):
        with offload_worker(SPEC) as publisher:
            job = publisher.publish("text.wordcount", {"text": "a b a"})
            record = offload_wait(publisher, job.job_id, "succeeded")
        assert record.result["words"] == 3

Nothing here mocks a broker: a test that passes here passes against a deployment.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import dramatiq

    from offload.jobs import WorkerSpec
    from offload.publish import Publisher
    from offload.settings import Settings
    from offload.status import JobRecord


def xdist_worker() -> int:
    """Which of pytest-xdist's worker processes this is: ``gw<n>`` is ``n``; 0 without xdist."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


def broker_url_for_tests() -> str:
    """The tests' RabbitMQ vhost: ``OFFLOAD_TEST_BROKER_URL``, or ``offload_test`` on loopback.

    Under pytest-xdist, worker ``n`` (above 0) uses the vhost ``<vhost>_<n>`` instead, so that tests
    running side by side never share a queue; each of those vhosts must exist.
    """
    url = os.environ.get("OFFLOAD_TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/offload_test")
    worker = xdist_worker()
    return f"{url}_{worker}" if worker else url


def redis_url_for_tests() -> str:
    """The tests' Redis database: ``OFFLOAD_TEST_REDIS_URL``, or db 15 on loopback.

    Under pytest-xdist, worker ``n`` (above 0) uses database ``<db> - n`` instead.
    """
    url = os.environ.get("OFFLOAD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    worker = xdist_worker()
    if not worker:
        return url
    base, _, database = url.rpartition("/")
    return f"{base}/{int(database) - worker}"


def wait_for(
    predicate: Callable[[], bool],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: Callable[[], str] | str = "condition not met",
) -> None:
    """Poll ``predicate`` every ``interval`` seconds until it is true.

    Raises:
        AssertionError: it was still false after ``timeout`` seconds (the test fails with ``message``).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(message() if callable(message) else message)


def wait_state(publisher: Publisher, job_id: str, *states: str, timeout: float = 10.0) -> JobRecord:
    """The record of ``job_id`` once it is in one of ``states``; fails the test after ``timeout``."""
    seen: dict[str, JobRecord] = {}

    def reached() -> bool:
        record = publisher.get(job_id)
        if record is not None:
            seen["record"] = record
        return record is not None and record.state.value in states

    wait_for(reached, timeout=timeout, message=lambda: f"job {job_id} never reached {states}: {seen.get('record')}")
    return seen["record"]


@contextlib.contextmanager
def serving(
    spec: WorkerSpec[Any],
    settings: Settings,
    *,
    threads: int = 2,
    resources: tuple[object, ...] = (),
    stop_timeout_ms: int = 10_000,
) -> Iterator[dramatiq.Worker]:
    """Run ``spec``'s actors (and the system ones) in a Dramatiq worker in this process, with ``settings``."""
    import dramatiq

    from offload.contracts import BUILT_IN
    from offload.publish import Publisher

    worker_publisher = Publisher.from_settings(settings, local=[*BUILT_IN, *spec.contracts], pin_connections=True)
    broker = spec.build(settings, publisher=worker_publisher, resources=resources)
    broker.emit_after("process_boot")  # starts the time-limit watchdog, as the dramatiq CLI does
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(timeout=stop_timeout_ms)
        broker.close()
        worker_publisher.close()


@contextlib.contextmanager
def running_worker(
    spec: WorkerSpec[Any],
    settings: Settings,
    *,
    threads: int = 2,
    resources: tuple[object, ...] = (),
    stop_timeout_ms: int = 10_000,
) -> Iterator[Publisher]:
    """Run ``spec`` in this process (see :func:`serving`); yields a publisher knowing its job types."""
    from offload.contracts import BUILT_IN
    from offload.publish import Publisher

    settings = spec.settings(**settings.model_dump())  # the worker's own settings class, its defaults
    client = Publisher.from_settings(settings, local=[*BUILT_IN, *spec.contracts])
    try:
        with serving(spec, settings, threads=threads, resources=resources, stop_timeout_ms=stop_timeout_ms):
            yield client
    finally:
        client.close()


@pytest.fixture
def offload_settings() -> Iterator[Settings]:
    """Settings for the test vhost and Redis database; the database is flushed after the test."""
    import pika

    from offload.errors import StatusStoreUnavailable
    from offload.settings import Settings
    from offload.status.testdb import TestDatabase

    database = TestDatabase(redis_url_for_tests())
    try:
        pika.BlockingConnection(pika.URLParameters(broker_url_for_tests() + "?socket_timeout=2")).close()
        if not database.claim():
            pytest.exit("The test Redis database holds data that is not a test's; refusing to flush it.", 3)
    except (StatusStoreUnavailable, pika.exceptions.AMQPError) as exc:
        message = f"RabbitMQ or Redis is unreachable for the tests ({type(exc).__name__})."
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    settings = Settings(
        env="test",
        broker_url=broker_url_for_tests(),
        redis_url=redis_url_for_tests(),
        log_format="text",
        url_allow_hosts=["127.0.0.1"],
        metrics=False,
    )
    yield settings
    database.flush()
    database.close()


@pytest.fixture
def offload_worker(offload_settings: Settings) -> Callable[..., contextlib.AbstractContextManager[Publisher]]:
    """A worker spec served in this process while a ``with`` block runs; yields a publisher.

    Use: ``with offload_worker(SPEC, threads=2) as publisher:``.
    """

    def start(spec: WorkerSpec[Any], **options: Any) -> contextlib.AbstractContextManager[Publisher]:
        return running_worker(spec, offload_settings, **options)

    return start


@pytest.fixture
def offload_wait() -> Callable[..., JobRecord]:
    """Wait for a job to reach one of some states, and return its record.

    Use: ``offload_wait(publisher, job_id, "succeeded", timeout=10)``.
    """
    return wait_state
