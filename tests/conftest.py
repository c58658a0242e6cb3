"""Fixtures for every tier: settings, real Redis (own db) and RabbitMQ (own vhost), publisher, workers.

A missing server fails the run when ``CI`` is set and skips the test otherwise (Dramatiq's
``check_rabbitmq`` habit). The Redis test database must be empty at session start unless this
suite left it (RQ's ``find_empty_redis_database`` habit); it is flushed after every test.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator

import pika
import pika.exceptions
import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from offload import testing as offload_testing
from offload.errors import StatusStoreUnavailable
from offload.publish import Publisher
from offload.settings import Settings
from offload.status import JobRecord
from offload.status.testdb import TestDatabase
from offload_api.app import create_app
from tests.s3_server import stop_s3_server
from tests.support import (
    AMQP_URL,
    REDIS_URL,
    TEST_REDIS_DB,
    TEST_VHOST,
    Api,
    RunningWorker,
    delete_queues,
    make_settings,
)

#: Fixtures of the tiers, usable from every folder (their helpers are imported from tests.support).
pytest_plugins = [
    "tests.http_source",
    "tests.support.email",
    "tests.support.media",
    "tests.support.reports",
    "tests.support.system",
    "tests.support.webhooks",
    "tests.support.push",
    "tests.support.security",
    "tests.support.browser",
    "tests.support.wire",
    "tests.support.otlp",
]


#: Folders whose files take longest (fault scenarios, whole stacks of processes, fuzzers): run
#: first, so that processes side by side (scripts/test.sh) end together instead of one of them
#: finishing a long file alone at the end.
LONGEST_FIRST = ("chaos", "system", "fuzz")


def _rank(item: pytest.Item) -> int:
    parts = item.path.relative_to(item.config.rootpath).parts
    folder = parts[1] if len(parts) > 2 and parts[0] == "tests" else ""
    return LONGEST_FIRST.index(folder) if folder in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "servers" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
    items.sort(key=_rank)  # stable: each file's tests stay together and in order


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
    database = TestDatabase(REDIS_URL)
    try:
        if not database.claim():
            pytest.exit(f"Redis db {TEST_REDIS_DB} is not empty and not ours; refusing to flush it.", returncode=3)
        database.flush()
    except StatusStoreUnavailable:
        problems.append("Redis unreachable on 127.0.0.1:6379; run `make test`.")
    finally:
        database.close()
    if problems:
        if os.environ.get("CI"):
            pytest.fail(" ".join(problems))
        pytest.skip(" ".join(problems))


@pytest.fixture
def settings(servers: None) -> Settings:
    return make_settings()


@pytest.fixture
def redis_client(servers: None) -> Iterator[redis.Redis]:
    database = TestDatabase(REDIS_URL)
    database.claim()  # the session's check (``servers``) made sure it is ours
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    database.flush()
    database.close()
    client.close()


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


@pytest.fixture
def worker(settings: Settings, publisher: Publisher) -> Iterator[RunningWorker]:
    running = RunningWorker(settings, publisher)
    yield running
    running.stop()


@pytest.fixture
def wait_state(publisher: Publisher) -> Callable[..., JobRecord]:
    """``wait_state(job_id, "succeeded", timeout=10)``: wait until the job is in one of the states."""
    return functools.partial(offload_testing.wait_state, publisher)


@pytest.fixture
def app(settings: Settings, publisher: Publisher) -> Flask:
    """The HTTP API (admin pages included) on the test settings and publisher."""
    return create_app(settings, publisher=publisher)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def api(client: FlaskClient) -> Api:
    """The API called as tenant acme's client key (``api.as_("globex")`` for another)."""
    return Api(client)
