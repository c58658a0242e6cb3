"""Fixtures that run the suite as real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import AMQP_URL, REDIS_URL
from tests.system.stack import PrivateRabbitMQ, stack_env


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
