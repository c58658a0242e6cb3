"""Fixtures that run the suite as real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import AMQP_URL, REDIS_URL
from tests.system.stack import PrivateRabbitMQ, PrivateRedis, stack_env


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    folder.mkdir()
    return folder


@pytest.fixture
def env(redis_client, clean_broker) -> dict[str, str]:
    return stack_env(AMQP_URL, REDIS_URL)


@pytest.fixture
def private_rabbitmq(servers, tmp_path: Path) -> Iterator[PrivateRabbitMQ]:
    node = PrivateRabbitMQ(tmp_path / "rabbitmq")
    node.start()
    yield node
    if node.process is not None and node.process.poll() is None:
        try:
            node.resume()
        except ProcessLookupError:
            pass
        node.stop()


@pytest.fixture
def private_redis(servers, clean_broker, tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own, which it may stop and start (Redis outages)."""
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
