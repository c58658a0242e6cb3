"""email.send end to end: the API, RabbitMQ, the email worker and a real SMTP server."""

from __future__ import annotations

import dramatiq
import pytest

from offload.publish import Publisher
from offload.settings import Settings
from offload_api.app import create_app
from tests.helpers import wait_for
from tests.support import Api
from tests.support.email import Sink

WELCOME = {
    "to": [{"email": "ann@example.com", "name": "Ann"}],
    "template": "welcome",
    "vars": {"name": "Ann <b>&</b> {{7*7}}", "product": "Offload"},
}


@pytest.fixture
def api(settings: Settings, publisher: Publisher) -> Api:
    return Api(create_app(settings, publisher=publisher).test_client())


def _wait_ended(publisher: Publisher, job_id: str, timeout: float = 15):
    return publisher.wait(job_id, timeout=timeout)


def test_a_welcome_email_sent_over_http_arrives_once_with_both_parts_escaped_and_its_message_id(
    api: Api, publisher: Publisher, email_worker: dramatiq.Worker, smtp_sink: tuple[Sink, int]
) -> None:
    sink, _ = smtp_sink
    response = api.submit("email.send", WELCOME)
    assert response.status_code == 202
    job_id = response.get_json()["id"]
    record = _wait_ended(publisher, job_id)
    assert record is not None and record.state == "succeeded", record
    assert len(sink.messages) == 1
    message = sink.messages[0]
    assert message["Message-ID"] == f"<{job_id}@offload.local>"
    assert message["Subject"] == "Welcome to Offload, Ann <b>&</b> {{7*7}}!"
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "Ann &lt;b&gt;&amp;&lt;/b&gt; {{7*7}}" in html and "Ann <b>&</b> {{7*7}}" in text
    assert record.result == {
        "message_id": f"<{job_id}@offload.local>",
        "recipients": ["ann@example.com"],
        "duplicate": False,
    }


def test_a_redelivered_email_job_is_not_sent_twice(
    publisher: Publisher, email_worker: dramatiq.Worker, smtp_sink: tuple[Sink, int]
) -> None:
    sink, _ = smtp_sink
    job = publisher.publish("email.send", WELCOME, tenant="acme")
    _wait_ended(publisher, job.job_id)
    # The worker died after sending and before recording success: the job is redelivered as running.
    store = publisher.store
    store.client.hset(store.keys.job(job.job_id), mapping={"state": "running"})
    message = store.queries.stored_message(job.job_id)
    assert message is not None
    publisher.republish(message)
    wait_for(
        lambda: publisher.get(job.job_id).attempts == 2 and publisher.get(job.job_id).state == "succeeded", timeout=10
    )
    assert len(sink.messages) == 1
    assert publisher.get(job.job_id).result["duplicate"] is True


def test_a_5xx_refusal_fails_the_job_at_once_with_the_servers_reply(
    publisher: Publisher, email_worker: dramatiq.Worker, smtp_sink: tuple[Sink, int]
) -> None:
    sink, _ = smtp_sink
    sink.reject["ann@example.com"] = "550 5.1.1 <ann@example.com>: Recipient address rejected"
    job = publisher.publish("email.send", WELCOME, tenant="acme")
    record = _wait_ended(publisher, job.job_id)
    assert record.state == "failed" and record.attempts == 1 and record.error_code == "smtp_rejected"
    assert "550 5.1.1" in (record.error_message or "") and sink.messages == []


def test_a_4xx_deferral_is_retried(
    publisher: Publisher, email_worker: dramatiq.Worker, smtp_sink: tuple[Sink, int]
) -> None:
    sink, _ = smtp_sink
    sink.reject["ann@example.com"] = "451 4.7.1 Try again later"
    job = publisher.publish("email.send", WELCOME, tenant="acme")
    wait_for(lambda: publisher.get(job.job_id).state == "retrying", timeout=10)
    record = publisher.get(job.job_id)
    assert record.error_code == "smtp_deferred" and "451 4.7.1" in (record.error_message or "")


def test_partly_refused_recipients_are_reported_and_the_rest_receive_it(
    publisher: Publisher, email_worker: dramatiq.Worker, smtp_sink: tuple[Sink, int]
) -> None:
    sink, _ = smtp_sink
    sink.reject["bob@example.com"] = "550 5.1.1 No such user"
    payload = {**WELCOME, "to": [{"email": "ann@example.com"}], "cc": [{"email": "bob@example.com"}]}
    job = publisher.publish("email.send", payload, tenant="acme")
    record = _wait_ended(publisher, job.job_id)
    assert record.state == "succeeded" and record.result["recipients"] == ["ann@example.com"]
    assert len(sink.messages) == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**WELCOME, "template": "nope"}, "payload.template"),
        ({**WELCOME, "subject": "Hi\r\nBcc: victim@example.com"}, "payload.subject"),
        ({**WELCOME, "subject": "Hi\u2028there"}, "payload.subject"),
        ({**WELCOME, "to": [{"email": "a@example.com\nBcc: x@example.com"}]}, "payload.to[0].email"),
        ({**WELCOME, "to": [{"email": "a@example.com, b@example.com"}]}, "payload.to[0].email"),
        ({**WELCOME, "to": [{"email": "a@example.com", "name": "Evil\r\nBcc: x@e.com"}]}, "payload.to[0].name"),
        ({**WELCOME, "vars": {}}, "payload"),
        ({**WELCOME, "to": []}, "payload.to"),
    ],
)
def test_bad_email_submissions_are_422_naming_the_field(api: Api, payload: dict, field: str) -> None:
    response = api.submit("email.send", payload)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.get_json()["errors"]]


def test_an_unreachable_smtp_server_is_retried(api: Api, publisher: Publisher, settings: Settings) -> None:
    from offload.contracts.email import SendEmailPayload
    from offload.errors import TransientJobError
    from offload.worker import JobContext
    from offload_email.handlers import EmailHandlers
    from offload_email.mailer import SmtpMailer
    from offload_email.settings import EmailSettings
    from tests.helpers import free_port

    closed = EmailSettings(smtp_port=free_port())
    handlers = EmailHandlers(mailer=SmtpMailer(closed), store=publisher.store, settings=closed)
    ctx = JobContext(
        job_id="6a2e3a38-3f1e-4a3c-9f0e-3b8f3c1d2e4f",
        job_type="email.send",
        tenant="acme",
        attempt=1,
        store=publisher.store,
    )
    with pytest.raises(TransientJobError) as caught:
        handlers.send(ctx, SendEmailPayload.model_validate(WELCOME))
    assert caught.value.code == "smtp_unavailable"


def test_a_tenant_over_its_email_quota_gets_429_with_retry_after_and_other_tenants_do_not(
    servers, redis_client, clean_broker
) -> None:
    from tests.support import make_settings
    from tests.support.email import register_email_worker

    settings = make_settings()
    publisher = Publisher.from_settings(settings)
    try:
        register_email_worker(publisher, email_quota_per_hour=3)  # the email worker's setting sizes the quota
        api = Api(create_app(settings, publisher=publisher).test_client())
        assert api.submit("email.send", WELCOME).status_code == 202
        batch = {
            "template": "welcome",
            "recipients": [{"email": f"u{i}@example.com", "vars": {"name": "U"}} for i in range(2)],
        }
        assert api.submit("email.batch", batch).status_code == 202  # 1 + 2 = 3: the quota is used up
        over = api.submit("email.send", WELCOME)
        assert over.status_code == 429 and over.get_json()["error"] == "quota_exceeded"
        assert 0 < int(over.headers["Retry-After"]) <= 3600
        assert api.as_("globex").submit("email.send", WELCOME).status_code == 202
        assert api.submit("system.noop").status_code == 202  # other job types are not counted
        # An idempotent replay of an accepted submission costs nothing more.
        globex, body, key = api.as_("globex"), {"type": "email.send", "payload": WELCOME}, {"Idempotency-Key": "k"}
        assert globex.post("/v1/jobs", json=body, headers=key).status_code == 202  # globex: 2 of 3
        assert globex.post("/v1/jobs", json=body, headers=key).status_code == 200  # replay: still 2
        assert globex.submit("email.send", WELCOME).status_code == 202  # 3 of 3
        assert globex.submit("email.send", WELCOME).status_code == 429
    finally:
        publisher.close()
