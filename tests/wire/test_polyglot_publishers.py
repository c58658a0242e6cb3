"""Jobs published from Node.js (amqplib) and Go (amqp091-go), by publishers written from
``docs/wire-format.md`` alone, are tracked, delayed, idempotent, prioritised, called back,
quota-limited and authorised exactly as HTTP submissions are (issue #23).

Each publisher logs in to RabbitMQ as a broker user of its own (publish-only permissions, as the
doc prescribes) and sets the AMQP ``user_id`` property, which RabbitMQ checks against the login;
``OFFLOAD_WIRE_PUBLISHERS`` maps that user to its tenants and job types. What a message says of
its own tenant is believed only within that mapping.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from offload.publish import Publisher
from offload.settings import Settings
from offload.status import JobState
from offload.testing import serving
from offload_api.app import create_app
from offload_email.settings import EmailSettings
from offload_email.worker import SPEC as EMAIL_SPEC
from tests.helpers import wait_for
from tests.support import Api, RunningWorker, make_settings
from tests.support.email import Sink
from tests.support.polyglot import LANGUAGES, publish, publisher_command
from tests.support.webhooks import Receiver
from tests.support.wire import BrokerUser, broker_user, ended

#: Each language's publisher acts for a tenant that has an API key too, so that HTTP can be asked
#: the same question; its second tenant may be named in a message; its job types are listed.
OWN_TENANT = {"node": "acme", "go": "globex"}
JOB_TYPES = ["system.noop", "system.sleep", "email.send"]


@pytest.fixture(scope="module")
def broker_users() -> Iterator[dict[str, BrokerUser]]:
    """A publish-only RabbitMQ user per language, and a stranger nobody mapped."""
    with broker_user("pub_node") as node, broker_user("pub_go") as go, broker_user("stranger") as stranger:
        yield {"node": node, "go": go, "stranger": stranger}


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wire-publishers")


@pytest.fixture(params=LANGUAGES)
def language(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def command(language: str, build_dir: Path) -> list[str]:
    return publisher_command(language, build_dir)


@pytest.fixture
def settings(servers: None, broker_users: dict[str, BrokerUser]) -> Settings:
    mapping = {
        broker_users[language].name: {"tenants": [OWN_TENANT[language], f"{language}-two"], "job_types": JOB_TYPES}
        for language in LANGUAGES
    }
    return make_settings(wire_publishers=mapping)


@pytest.fixture
def email_worker(settings: Settings, publisher: Publisher, smtp_sink: tuple[Sink, int]) -> Iterator[EmailSettings]:
    """The email worker (email and webhooks queues), one email an hour per tenant."""
    _, port = smtp_sink
    values = {**settings.model_dump(), "smtp_host": "127.0.0.1", "smtp_port": port, "email_quota_per_hour": 1}
    email_settings = EmailSettings(**values)
    with serving(EMAIL_SPEC, email_settings, threads=4, stop_timeout_ms=10_000):
        yield email_settings


def _job(job_type: str, payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
    queue = job_type.partition(".")[0]
    return {"type": job_type, "queue": queue, "payload": payload, **fields}


def test_jobs_from_another_language_are_tracked_delayed_idempotent_prioritised_and_called_back(
    language: str,
    command: list[str],
    broker_users: dict[str, BrokerUser],
    publisher: Publisher,
    worker: RunningWorker,
    email_worker: EmailSettings,
    receiver: Receiver,
) -> None:
    key = f"order-{uuid.uuid4()}"
    once = _job("system.noop", {"echo": "once"}, options={"idempotency_key": key})
    labels = {"by": language}
    jobs = [
        _job("system.noop", {"echo": "plain"}, priority="high", options={"tags": ["polyglot"], "metadata": labels}),
        _job("system.noop", {"echo": "later"}, tenant=f"{language}-two", options={"delay": 2}),
        once,
        once,  # the same key and body again: the same job, as over HTTP
        _job("system.noop", {"echo": "called"}, options={"callback_url": receiver.url}),
    ]
    published_at = time.time()
    plain, later, one, other, called = publish(command, broker_users[language].url, jobs)

    wait_for(lambda: publisher.get(later) is not None, timeout=10, message="the delayed job was not recorded")
    delayed = publisher.get(later)
    assert delayed is not None and delayed.state is JobState.SCHEDULED and delayed.tenant == f"{language}-two"

    record = ended(publisher, plain)
    assert record.state is JobState.SUCCEEDED and record.tenant == OWN_TENANT[language]
    shown = record.public()
    assert shown["priority"] == "high" and shown["tags"] == ["polyglot"] and shown["metadata"] == labels

    # Whichever of the two a worker thread adopted first is the job; the other is dropped as it.
    wait_for(lambda: publisher.get(one) is not None or publisher.get(other) is not None, timeout=10)
    kept, dropped = (one, other) if publisher.get(one) is not None else (other, one)
    record = ended(publisher, kept)
    assert record.state is JobState.SUCCEEDED and record.attempts == 1
    record = ended(publisher, called)
    assert record.state is JobState.SUCCEEDED
    wait_for(lambda: len(receiver.received) >= 1, timeout=20, message="no webhook arrived")
    headers, body = receiver.received[0]
    assert json.loads(body)["data"]["id"] == called and headers["webhook-signature"].startswith("v1,")

    record = ended(publisher, later)
    assert record.state is JobState.SUCCEEDED and record.started_at is not None
    assert record.started_at / 1000 - published_at >= 1.8  # not before its delay
    assert publisher.get(dropped) is None  # the repeated message made no second job


def test_emails_from_another_language_meet_the_tenants_quota_as_http_ones_do(
    language: str,
    command: list[str],
    broker_users: dict[str, BrokerUser],
    settings: Settings,
    publisher: Publisher,
    email_worker: EmailSettings,
    smtp_sink: tuple[Sink, int],
) -> None:
    sink, _ = smtp_sink
    email = {"to": [{"email": "ann@example.com"}], "template": "welcome", "vars": {"name": "A", "product": "P"}}
    [first] = publish(command, broker_users[language].url, [_job("email.send", email)])
    assert ended(publisher, first).state is JobState.SUCCEEDED  # the tenant's one email this hour
    app: Flask = create_app(settings, publisher=publisher)
    http = Api(app.test_client(), OWN_TENANT[language]).submit("email.send", email)
    assert http.status_code == 429 and http.get_json()["error"] == "quota_exceeded"
    [second] = publish(command, broker_users[language].url, [_job("email.send", email)])
    record = ended(publisher, second)
    assert record.state is JobState.DEAD and record.error_code == "quota_exceeded" and record.attempts == 0
    time.sleep(0.3)
    assert len(sink.messages) == 1


def test_messages_naming_another_tenant_an_unlisted_type_or_no_mapped_user_are_refused_and_run_nothing(
    language: str,
    command: list[str],
    broker_users: dict[str, BrokerUser],
    publisher: Publisher,
    worker: RunningWorker,
) -> None:
    other = OWN_TENANT["go" if language == "node" else "node"]
    victim = publisher.publish("system.noop", {"echo": "theirs"}, tenant=other, delay=60).job_id
    claims, unlisted, anonymous, replay = publish(
        command,
        broker_users[language].url,
        [
            _job("system.noop", {"echo": "as them"}, tenant=other),
            _job("system.fail", {}),
            _job("system.noop", {"echo": "no user"}, user_id=False),
            _job("system.noop", {"echo": "evil"}, job_id=victim),
        ],
    )
    [stranger] = publish(command, broker_users["stranger"].url, [_job("system.noop", {"echo": "stranger"})])

    for job_id, code in ((claims, "tenant_not_allowed"), (unlisted, "job_type_not_allowed")):
        record = ended(publisher, job_id)
        assert (record.state, record.error_code, record.attempts) == (JobState.DEAD, code, 0)
        assert record.tenant == OWN_TENANT[language]  # visible to the publisher's own tenant, not the one named

    def noted(job_id: str) -> dict[str, str] | None:
        return publisher.store.janitor.dead_letter_notes([job_id])[0]

    for job_id in (anonymous, stranger):
        wait_for(lambda: noted(job_id) is not None, timeout=15, message=f"no dead-letter note for {job_id}")  # noqa: B023
        note = noted(job_id)
        assert note is not None and note["code"] == "unauthenticated_publisher"
        assert publisher.get(job_id) is None  # never recorded, never run
    wait_for(lambda: noted(victim) is not None, timeout=15, message="the replayed job id was not refused")
    note = noted(victim)
    assert note is not None and note["code"] == "duplicate_job_id"
    theirs = publisher.get(victim)
    assert theirs is not None and theirs.state is JobState.SCHEDULED and theirs.tenant == other
    assert theirs.public()["payload"] == {"echo": "theirs"} and theirs.attempts == 0
