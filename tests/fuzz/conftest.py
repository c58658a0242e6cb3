"""The fuzzers' target: the real API process (gunicorn + gevent on a free loopback port) over real RabbitMQ and Redis.

One server serves a whole module: starting one per generated example would cost seconds each.
No worker runs, so the jobs the fuzzers get accepted stay queued and nothing is ever fetched or
called back: the API itself only validates URLs, it never connects to them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.conftest import AMQP_URL, OWNER_KEY, REDIS_URL, delete_queues
from tests.system.stack import Api, stack_env


@pytest.fixture(scope="module")
def live_api(servers: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """An ``offload-api`` process on the test vhost and Redis db, emptied before and after the module."""
    base = tmp_path_factory.mktemp("fuzz-api")
    logs = base / "logs"
    logs.mkdir()
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.set(OWNER_KEY, "1")
    delete_queues()
    api = Api(stack_env(AMQP_URL, REDIS_URL, OFFLOAD_STORAGE_DIR=str(base / "storage")), logs)
    try:
        yield api
    finally:
        api.stop()
        delete_queues()
        client.flushdb()
        client.set(OWNER_KEY, "1")
        client.close()


@pytest.fixture(autouse=True)
def _schemathesis_node_id(request: pytest.FixtureRequest) -> None:
    """Give the test item the ``_nodeid`` attribute schemathesis 4.32's ``from_fixture`` reads and rewrites.

    pytest 9.2 keeps a node's id elsewhere (``nodeid`` is read-only); schemathesis only uses the
    attribute to name the operation in its reports, and puts the old value back afterwards.
    """
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
