"""What the tests share: the test vhost and database, settings, queue probes, in-process workers, the API client.

Fixtures live in ``tests/conftest.py`` and the plugin modules beside this one (listed in its
``pytest_plugins``); everything else a test imports comes from here, never from a conftest.
"""

from __future__ import annotations

import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import dramatiq
import pika
import pika.exceptions
from flask.testing import FlaskClient

from offload.contracts import BUILT_IN
from offload.jobs import WorkerSpec, installed_specs
from offload.publish import Publisher
from offload.settings import Settings
from offload.status import JobState, StatusStore, now_ms
from offload.status.testdb import OWNER_KEY as OWNER_KEY  # the mark of the tests' Redis database
from offload.testing import broker_url_for_tests, redis_url_for_tests, xdist_worker
from tests.helpers import wait_for
from tests.s3_server import storage_overrides

#: Under pytest-xdist each worker process has a vhost, a Redis database and a storage directory of
#: its own (``offload.testing``), so that tests running side by side never meet.
WORKER = xdist_worker()

AMQP_URL = broker_url_for_tests()

REDIS_URL = redis_url_for_tests()

TEST_VHOST = AMQP_URL.rpartition("/")[2]

TEST_REDIS_DB = int(REDIS_URL.rpartition("/")[2])


#: Where the tests' uploads and outputs go (never inside the repository).
TEST_STORAGE = Path(tempfile.gettempdir()) / ("offload-test-storage" + (f"-{WORKER}" if WORKER else ""))

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


#: What no response may contain (reliability-security.md §7). "password" is checked as a word that is
#: not the name of the shipped ``password_reset`` template.
FORBIDDEN_IN_RESPONSES = re.compile(r"Traceback|amqp://|redis://|guest:guest|password(?!_reset)", re.IGNORECASE)


class Api:
    """Calls the API as one of the test keys, checking that no response leaks internals."""

    def __init__(self, client: FlaskClient, who: str = "acme") -> None:
        self.client = client
        self.who = who

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEYS[self.who]}", **(extra or {})}

    def as_(self, who: str) -> Api:
        return Api(self.client, who)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        kw["headers"] = self.headers(kw.get("headers"))
        response = self.client.open(path, method=method, **kw)
        body = response.get_data().decode(errors="replace")
        response.close()  # releases a streamed file (downloads); the data stays cached
        leak = FORBIDDEN_IN_RESPONSES.search(body)
        assert leak is None, f"response to {method} {path} contains {leak.group(0) if leak else ''!r}"
        return response

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)

    def anonymous_get(self, path: str) -> Any:
        """A GET with no API key (signed links)."""
        response = self.client.get(path)
        response.get_data()
        response.close()
        return response

    def post(self, path: str, **kw: Any) -> Any:
        return self.call("POST", path, **kw)

    def submit(self, job_type: str = "system.noop", payload: dict[str, Any] | None = None, **options: Any) -> Any:
        body: dict[str, Any] = {"type": job_type, "payload": payload or {}}
        if options:
            body["options"] = options
        return self.post("/v1/jobs", json=body)


def queued_record(store: StatusStore, *, max_retries: int = 1) -> str:
    """A new ``system.noop`` job of tenant acme, recorded ``queued`` straight in ``store`` (no message)."""
    job_id = str(uuid.uuid4())
    fields: dict[str, str | int] = {
        "tenant": "acme",
        "type": "system.noop",
        "queue": "system",
        "created_at": now_ms(),
        "max_retries": max_retries,
        "payload": "{}",
    }
    assert store.lifecycle.create(job_id, fields).outcome == "created"
    return job_id
