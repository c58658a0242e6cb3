"""The fuzzers' target: the real API process (gunicorn + gevent on a free loopback port) over real RabbitMQ and Redis.

One server serves a whole module: starting one per generated example would cost seconds each.
No worker runs, so the jobs the fuzzers get accepted stay queued and nothing is ever fetched or
called back: the API itself only validates URLs, it never connects to them. The one exception is
:func:`system_worker`, which a test that follows jobs to their end asks for: it serves only the
``system`` queue, for as long as that test runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from offload.status.testdb import TestDatabase
from tests.support import AMQP_URL, REDIS_URL, delete_queues
from tests.system.stack import Api, Worker, stack_env


def _empty_redis() -> None:
    """Empty the test Redis db, keeping the mark that says the tests own it."""
    database = TestDatabase(REDIS_URL)
    try:
        database.flush()
    finally:
        database.close()


def _purge_queues(*names: str) -> None:
    """Drop the messages waiting in each queue of ``names`` that exists (the queues stay declared)."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        for name in names:
            try:
                connection.channel().queue_purge(name)
            except ChannelClosedByBroker:  # no such queue: nothing waits in it
                continue
    finally:
        connection.close()


@pytest.fixture(scope="module")
def fuzz_stack(servers: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], Path]:
    """The environment the module's processes share (the test vhost and Redis db), and their log directory."""
    base = tmp_path_factory.mktemp("fuzz-api")
    logs = base / "logs"
    logs.mkdir()
    return stack_env(AMQP_URL, REDIS_URL, OFFLOAD_STORAGE_DIR=str(base / "storage")), logs


@pytest.fixture(scope="module")
def live_api(fuzz_stack: tuple[dict[str, str], Path]) -> Iterator[Api]:
    """An ``offload-api`` process on the test vhost and Redis db, emptied before and after the module."""
    env, logs = fuzz_stack
    _empty_redis()
    delete_queues()
    api = Api(env, logs)
    try:
        yield api
    finally:
        api.stop(graceful=False)  # the fuzzers may leave live streams open: no 20 s graceful wait
        delete_queues()
        _empty_redis()


@pytest.fixture
def system_worker(live_api: Api, fuzz_stack: tuple[dict[str, str], Path]) -> Iterator[Worker]:
    """A worker of the ``system`` queue only, on a slate cleared of the jobs the module had accepted so far.

    The fuzzers' ``system.sleep`` jobs may sleep ten minutes each and some wait for their delay:
    left in the queue or in Redis they would take the worker's threads, and the test's own jobs
    would wait behind them. So the ``system`` queues are purged and Redis emptied before it starts;
    the API keeps running (its keys come from its environment, not from Redis).
    """
    env, logs = fuzz_stack
    _purge_queues("system", "system.DQ", "system.XQ")
    _empty_redis()
    worker = Worker(env, logs, domain="email", queues=("system",))
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture(autouse=True)
def _schemathesis_node_id(request: pytest.FixtureRequest) -> None:
    """Give the test item the ``_nodeid`` attribute schemathesis 4.32's ``from_fixture`` reads and rewrites.

    pytest 9.2 keeps a node's id elsewhere (``nodeid`` is read-only); schemathesis only uses the
    attribute to name the operation in its reports, and puts the old value back afterwards.
    """
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
