"""Fixtures for every tier: settings, real Redis (own db) and RabbitMQ (own vhost), publisher, workers.

A missing server fails the run when ``CI`` is set and skips the test otherwise (Dramatiq's
``check_rabbitmq`` habit). The Redis test database must be empty at session start unless this
suite left it (RQ's ``find_empty_redis_database`` habit); it is flushed after every test.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pika
import pika.exceptions
import pytest
import redis

from offload.contracts import BUILT_IN
from offload.jobs import WorkerSpec, installed_specs
from offload.publish import Publisher
from offload.settings import Settings
from offload.status import JobRecord, JobState
from tests.helpers import wait_for
from tests.s3_server import stop_s3_server, storage_overrides

TEST_VHOST = "offload_test"
TEST_REDIS_DB = 15
AMQP_URL = os.environ.get("OFFLOAD_TEST_BROKER_URL", f"amqp://guest:guest@127.0.0.1:5672/{TEST_VHOST}")
REDIS_URL = os.environ.get("OFFLOAD_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{TEST_REDIS_DB}")
OWNER_KEY = "offloadtest:owner"
#: Where the tests' uploads and outputs go (never inside the repository).
TEST_STORAGE = Path(tempfile.gettempdir()) / "offload-test-storage"

#: API keys the tests use: tenant acme (client, reader), tenant globex (client), and an admin.
KEYS = {
    "acme": "acme-client-key-0123456789",
    "acme_reader": "acme-reader-key-0123456789",
    "globex": "globex-client-key-0123456789",
    "admin": "ops-admin-key-0123456789ab",
}
API_KEYS = (
    f"{KEYS['acme']}=acme:client,{KEYS['acme_reader']}=acme:reader,"
    f"{KEYS['globex']}=globex:client,{KEYS['admin']}=ops:admin"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "servers" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def _s3_server_stops() -> Iterator[None]:
    """The S3 server (tests/s3_server.py) starts on first use; it stops, by its PID, with the session."""
    yield
    stop_s3_server()


@pytest.fixture(scope="session")
def servers() -> None:
    """RabbitMQ (with the test vhost) and Redis on loopback, or skip (fail under CI)."""
    problems = []
    try:
        pika.BlockingConnection(pika.URLParameters(AMQP_URL + "?socket_timeout=2&stack_timeout=2")).close()
    except Exception as exc:
        problems.append(f"RabbitMQ vhost {TEST_VHOST!r} unreachable ({type(exc).__name__}); run `make test`.")
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    try:
        if client.dbsize() and not client.exists(OWNER_KEY):
            pytest.exit(f"Redis db {TEST_REDIS_DB} is not empty and not ours; refusing to flush it.", returncode=3)
        client.flushdb()
    except redis.ConnectionError:
        problems.append("Redis unreachable on 127.0.0.1:6379; run `make test`.")
    if problems:
        if os.environ.get("CI"):
            pytest.fail(" ".join(problems))
        pytest.skip(" ".join(problems))


def make_settings(**overrides: Any) -> Settings:
    """Test settings: the test vhost and db, the test keys, text logs, loopback URLs allowed."""
    values: dict[str, Any] = {
        "env": "test",
        "broker_url": AMQP_URL,
        "redis_url": REDIS_URL,
        "api_keys": API_KEYS,
        "log_format": "text",
        "url_allow_hosts": ["127.0.0.1"],
        "storage_dir": str(TEST_STORAGE),
        # In-process workers would point this process's prometheus-client at Dramatiq's files;
        # the metrics are tested on worker processes of their own (tests/system/test_metrics.py).
        "metrics": False,
        # The API's 0.75 s answer deadline is F5's, F14's and the broker-fault tests' matter, on API
        # processes of their own; here a confirm slowed by a loaded machine (seen on CI: one report
        # test's submission got 503 broker_unavailable) would fail a test about something else.
        # Submissions wait up to publish_timeout (2 s), after which the broker counts as hung.
        "submit_deadline": 2.0,
        **storage_overrides(),  # OFFLOAD_TEST_STORAGE=s3: the session's S3 server instead of storage_dir
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(servers: None) -> Settings:
    return make_settings()


@pytest.fixture
def redis_client(servers: None) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    client.set(OWNER_KEY, "1")
    yield client
    client.flushdb()
    client.set(OWNER_KEY, "1")
    client.close()


def queue_depth(queue: str, url: str = AMQP_URL) -> int:
    """The messages ready in ``queue`` now, in the vhost of ``url``."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def queue_consumers(queues: list[str], url: str = AMQP_URL) -> dict[str, int]:
    """How many consumers each of ``queues`` has now, in the vhost of ``url`` (0 for one not declared yet)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    counts = {}
    try:
        for queue in queues:
            channel = connection.channel()  # a passive declare of a missing queue closes its channel
            try:
                counts[queue] = int(channel.queue_declare(queue, passive=True).method.consumer_count)
            except pika.exceptions.ChannelClosedByBroker:
                counts[queue] = 0
            else:
                channel.close()
        return counts
    finally:
        connection.close()


def delete_queues(url: str = AMQP_URL) -> None:
    """Delete every Offload queue (with its DQ and XQ) in the vhost of ``url``."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for queue in {*BUILT_IN.queues, *(q for spec in installed_specs().values() for q in spec.queues)}:
            for name in (queue, f"{queue}.DQ", f"{queue}.XQ"):
                channel.queue_delete(name)
    finally:
        connection.close()


@pytest.fixture
def clean_broker(servers: None) -> Iterator[None]:
    delete_queues()
    yield
    delete_queues()


@pytest.fixture
def publisher(settings: Settings, redis_client: redis.Redis, clean_broker: None) -> Iterator[Publisher]:
    instance = Publisher.from_settings(settings)
    yield instance
    instance.close()


class RunningWorker:
    """An in-process Dramatiq worker serving the system queue (domain workers have their own fixtures)."""

    def __init__(self, settings: Settings, publisher: Publisher, threads: int = 4, *, probe: bool = True) -> None:
        self.broker = WorkerSpec(name="system", jobs=()).build(settings, publisher=publisher)
        self.broker.emit_after("process_boot")
        self.worker = dramatiq.Worker(self.broker, worker_threads=threads, worker_timeout=100)
        self.worker.start()
        self.publisher = publisher
        if probe:
            self._wait_ready(publisher)

    def _wait_ready(self, publisher: Publisher) -> None:
        # Ready means consuming: queues declared and a first job through (tests may then publish raw).
        probe = publisher.publish("system.noop", {}, tenant="_probe").job_id

        def probed() -> bool:
            record = publisher.get(probe)
            return record is not None and record.state is JobState.SUCCEEDED

        wait_for(probed, timeout=15, message="the test worker did not process a first job")

    def stop(self) -> None:
        self.worker.stop(timeout=10_000)
        self.broker.close()


@pytest.fixture
def worker(settings: Settings, publisher: Publisher) -> Iterator[RunningWorker]:
    running = RunningWorker(settings, publisher)
    yield running
    running.stop()


@pytest.fixture
def wait_state(publisher: Publisher) -> Callable[..., JobRecord]:
    """``wait_state(job_id, "succeeded", timeout=10)``: wait until the job is in one of the states."""

    def wait(job_id: str, *states: str, timeout: float = 10.0) -> JobRecord:
        found: dict[str, JobRecord] = {}

        def reached() -> bool:
            record = publisher.get(job_id)
            if record is not None:
                found["record"] = record
            return record is not None and record.state.value in states

        wait_for(
            reached, timeout=timeout, message=lambda: f"job {job_id} never reached {states}: {found.get('record')}"
        )
        return found["record"]

    return wait


@contextlib.contextmanager
def domain_worker(
    settings: Settings, spec: WorkerSpec[Any], *, threads: int, stop_timeout_ms: int
) -> Iterator[dramatiq.Worker]:
    """A domain service's real actors (``offload_<domain>.worker.SPEC``) in a Dramatiq worker in this process."""
    worker_publisher = Publisher.from_settings(settings, pin_connections=True)
    broker = spec.build(settings, publisher=worker_publisher)
    broker.emit_after("process_boot")
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop(timeout=stop_timeout_ms)
        broker.close()
        worker_publisher.close()
