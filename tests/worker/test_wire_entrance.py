"""The wire entrance (issue 27): jobs published straight to RabbitMQ as docs/wire-format.md says,
with plain pika and no Offload code, as a mapped broker user (issue 23), get what an HTTP
submission gets: they are recorded before they can park or wait, so nothing loses them, and they
are refused exactly where HTTP refuses."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from flask import Flask

from offload.publish import Publisher
from offload.settings import Settings
from offload.status import JobState
from offload.status.pauses import Pauses
from offload.status.slots import Slots
from offload.testing import serving
from offload_api.app import create_app
from offload_email.settings import EmailSettings
from offload_email.worker import SPEC as EMAIL_SPEC
from offload_media.settings import MediaSettings
from offload_media.worker import SPEC as MEDIA_SPEC
from offload_reports.settings import ReportSettings
from offload_reports.worker import SPEC as REPORTS_SPEC
from tests.helpers import serve_http, wait_for
from tests.support import Api, RunningWorker, make_settings
from tests.support.email import Sink
from tests.support.wire import ORDERS_GRANTS, BrokerUser, ended, publish_as, wire_message


@pytest.fixture
def settings(wire_settings: Settings) -> Settings:
    return wire_settings


def _recorded(publisher: Publisher, job_id: str) -> bool:
    return publisher.get(job_id) is not None


# -- nothing a wire job meets on its way loses it ---------------------------------------------


def test_wire_jobs_into_a_paused_queue_and_a_paused_type_are_recorded_and_run_after_resume(
    orders: BrokerUser, publisher: Publisher, worker: RunningWorker
) -> None:
    pauses = Pauses(publisher.store)
    for target, job_type, payload in (
        ("system", "system.noop", {"echo": "q"}),
        ("system.sleep", "system.sleep", {"ms": 10}),
    ):
        pauses.pause(target)
        time.sleep(1.2)  # workers read the paused set at most a second old
        message = wire_message(job_type, "system", payload)
        job_id: str = message["message_id"]
        publish_as(orders, "system", message)
        recorded = functools.partial(_recorded, publisher, job_id)
        wait_for(recorded, timeout=10, message=f"{target}: no record while paused")
        time.sleep(0.5)
        record = publisher.get(job_id)
        assert record is not None and record.state is JobState.QUEUED and record.tenant == "acme", target
        pauses.resume(target)
        assert ended(publisher, job_id).state is JobState.SUCCEEDED, target


def test_a_wire_job_that_meets_a_full_slot_is_recorded_and_runs_once_the_slot_frees(
    orders: BrokerUser, servers: None, publisher: Publisher
) -> None:
    settings = ReportSettings(
        **make_settings(wire_publishers=ORDERS_GRANTS, concurrency_limits={"report.build:tenant": 1}).model_dump()
    )
    key = "report.build:tenant|acme"
    # A holder that died: its lease runs out in a second, and the worker's sweep wakes the waiter.
    assert Slots(publisher.store, lease_s=1).take(key, "a-holder-that-died", 1)
    with serving(REPORTS_SPEC, settings, threads=2, stop_timeout_ms=10_000):
        payload = {"title": "T", "columns": [{"name": "a"}], "rows": [{"a": "x"}], "output": "csv"}
        message = wire_message("report.build", "reports", payload)
        job_id = message["message_id"]
        publish_as(orders, "reports", message)
        wait_for(lambda: publisher.get(job_id) is not None, timeout=10, message="no record while waiting for a slot")
        record = publisher.get(job_id)
        assert record is not None and record.state is JobState.QUEUED
        assert ended(publisher, job_id, timeout=30).state is JobState.SUCCEEDED


# -- nothing a message carries does more than the same body over HTTP -------------------------


class _Receiver(BaseHTTPRequestHandler):
    hits: list[str] = []
    bodies: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        _Receiver.hits.append(self.path)
        _Receiver.bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}"))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def email_worker_of(settings: Settings, smtp_sink: tuple[Sink, int]) -> Iterator[Any]:
    """Start an email worker (email and webhooks queues) with settings overrides; stops them all."""
    workers: list[Any] = []
    base = settings

    def start(**overrides: Any) -> EmailSettings:
        _, port = smtp_sink
        settings = EmailSettings(**{**base.model_dump(), "smtp_port": port, "smtp_host": "127.0.0.1", **overrides})
        context = serving(EMAIL_SPEC, settings, threads=4, stop_timeout_ms=10_000)
        workers.append(context)
        context.__enter__()
        return settings

    yield start
    for context in workers:
        context.__exit__(None, None, None)


def test_a_wire_webhook_deliver_for_another_tenants_job_delivers_nothing_and_ends_dead_internal_type(
    orders: BrokerUser, publisher: Publisher, worker: RunningWorker, email_worker_of: Any
) -> None:
    email_worker_of()
    theirs = publisher.publish("system.noop", {"echo": "secret"}, tenant="globex")
    assert ended(publisher, theirs.job_id).state is JobState.SUCCEEDED
    _Receiver.hits = []
    with serve_http(_Receiver) as port:
        message = wire_message(
            "webhook.deliver", "webhooks", {"job_id": theirs.job_id, "url": f"http://127.0.0.1:{port}/steal"}
        )
        publish_as(orders, "webhooks", message)
        record = ended(publisher, message["message_id"])
        time.sleep(0.5)
        assert _Receiver.hits == []
    assert record.state is JobState.DEAD and record.error_code == "internal_type" and record.attempts == 0
    assert record.tenant == "acme"  # the record is the publisher's, never the job it named


def test_a_wire_jobs_callback_is_sent_and_its_follow_up_runs_as_for_http(
    orders: BrokerUser, publisher: Publisher, worker: RunningWorker, email_worker_of: Any
) -> None:
    email_worker_of()
    _Receiver.hits, _Receiver.bodies = [], []
    with serve_http(_Receiver) as port:
        then = [{"type": "system.noop", "payload": {"echo": "next"}}]
        message = wire_message(
            "system.noop", "system", {"echo": "first"}, callback_url=f"http://127.0.0.1:{port}/hook", then=then
        )
        publish_as(orders, "system", message)
        record = ended(publisher, message["message_id"])
        wait_for(lambda: _Receiver.hits == ["/hook"], timeout=15, message=lambda: f"{_Receiver.hits}")
    assert record.state is JobState.SUCCEEDED and record.callback_url == f"http://127.0.0.1:{port}/hook"
    assert message["message_id"] in json.dumps(_Receiver.bodies[0]) and "succeeded" in json.dumps(_Receiver.bodies[0])
    [child] = [r for r in publisher.store.queries.list_jobs(tenant="acme").records if r.parent_id == record.id]
    assert ended(publisher, child.id).result == {"echo": "next"}


def test_a_wire_storage_cleanup_never_runs_and_ends_dead_internal_type(
    orders: BrokerUser, servers: None, publisher: Publisher
) -> None:
    settings = MediaSettings(**make_settings(wire_publishers=ORDERS_GRANTS).model_dump())
    with serving(MEDIA_SPEC, settings, threads=2, stop_timeout_ms=10_000):
        message = wire_message("storage.cleanup", "media", {})
        publish_as(orders, "media", message)
        record = ended(publisher, message["message_id"])
    assert record.state is JobState.DEAD and record.error_code == "internal_type" and record.started_at is None


def _http(settings: Settings, publisher: Publisher) -> Api:
    app: Flask = create_app(settings, publisher=publisher)
    return Api(app.test_client())


def test_wire_emails_outside_the_allow_list_or_past_the_quota_are_refused_as_http_refuses_them(
    orders: BrokerUser, publisher: Publisher, email_worker_of: Any, smtp_sink: tuple[Sink, int]
) -> None:
    sink, _ = smtp_sink
    # The limits are the email worker's settings: it registers them with its job types, and the
    # API (a publisher of plain settings) applies them as the worker does.
    email_worker_of(email_allowed_domains=["example.com"], email_quota_per_hour=1)
    settings = make_settings(wire_publishers=ORDERS_GRANTS)
    api_publisher = Publisher.from_settings(settings)
    try:
        api = _http(settings, api_publisher)
        outside = {"to": [{"email": "eve@elsewhere.org"}], "template": "welcome", "vars": {"name": "E", "product": "P"}}
        http = api.submit("email.send", outside)
        assert http.status_code == 422
        message = wire_message("email.send", "email", outside)
        publish_as(orders, "email", message)
        record = ended(publisher, message["message_id"])
        assert (
            record.state is JobState.DEAD and record.error_code == http.get_json()["error"] == "recipient_not_allowed"
        )
        assert record.public()["error"]["errors"] == http.get_json()["errors"]
        assert record.public()["error"]["errors"][0] == {
            "field": "payload.to[0].email",
            "pointer": "/payload/to/0/email",
            "rule": "domain_not_allowed",
            "problem": "the domain 'elsewhere.org' may not be sent to",
        }

        inside = {"to": [{"email": "ann@example.com"}], "template": "welcome", "vars": {"name": "A", "product": "P"}}
        first = wire_message("email.send", "email", inside)
        publish_as(orders, "email", first)  # the tenant's one email this hour
        assert ended(publisher, first["message_id"]).state is JobState.SUCCEEDED
        http = api.submit("email.send", inside)
        assert http.status_code == 429 and http.get_json()["error"] == "quota_exceeded"
        second = wire_message("email.send", "email", inside)
        publish_as(orders, "email", second)
        record = ended(publisher, second["message_id"])
        assert record.state is JobState.DEAD and record.error_code == "quota_exceeded"
        time.sleep(0.3)
        assert len(sink.messages) == 1  # only the first, allowed email was sent
    finally:
        api_publisher.close()


def test_a_wire_payload_that_breaks_its_schema_is_dead_naming_the_field(
    orders: BrokerUser, publisher: Publisher, worker: RunningWorker
) -> None:
    message = wire_message("system.sleep", "system", {"ms": "soon"})
    publish_as(orders, "system", message)
    record = ended(publisher, message["message_id"])
    assert record.state is JobState.DEAD and record.error_code == "validation_failed"
    assert [(e["field"], e["pointer"], e["rule"]) for e in record.public()["error"]["errors"]] == [
        ("payload.ms", "/payload/ms", "int_type")
    ]
    assert record.attempts == 0 and record.started_at is None


def test_a_wire_priority_out_of_range_is_dead_naming_the_option_and_its_rule(
    orders: BrokerUser, publisher: Publisher, worker: RunningWorker
) -> None:
    message = wire_message("system.noop", "system", {})
    message["options"]["broker_priority"] = 7
    publish_as(orders, "system", message)
    record = ended(publisher, message["message_id"])
    assert record.state is JobState.DEAD and record.error_code == "validation_failed"
    assert record.public()["error"]["errors"] == [
        {
            "field": "options.broker_priority",
            "pointer": "/options/broker_priority",
            "rule": "literal_error",
            "problem": "must be one of [1, 2, 3]",
        }
    ]


def test_unknown_types_and_wrong_queues_are_dead_with_their_reason_not_404(
    orders: BrokerUser, publisher: Publisher, worker: RunningWorker
) -> None:
    unknown = wire_message("system.nonesuch", "system", {})
    publish_as(orders, "system", unknown)
    wrong = wire_message("image.resize", "system", {})  # a media job on the queue every worker reads
    publish_as(orders, "system", wrong)
    assert ended(publisher, unknown["message_id"]).error_code == "unknown_type"
    assert ended(publisher, wrong["message_id"]).error_code == "wrong_queue"


def test_a_job_id_that_is_not_a_uuid_is_dead_with_its_reason_kept_beside_the_dead_letter(
    orders: BrokerUser, publisher: Publisher, worker: RunningWorker
) -> None:
    message = wire_message("system.noop", "system", {}, job_id="order-42")
    publish_as(orders, "system", message)
    wait_for(lambda: publisher.store.janitor.dead_letter_notes(["order-42"]) != [None], timeout=10)
    [note] = publisher.store.janitor.dead_letter_notes(["order-42"])
    assert note is not None and note["code"] == "invalid_job_id"
    assert publisher.get("order-42") is None
