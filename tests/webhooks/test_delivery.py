"""Webhooks end to end: a job with a callback URL ends, a signed delivery reaches a real receiver."""

from __future__ import annotations

import json

import dramatiq
import jsonschema
import pytest
from standardwebhooks import Webhook

from offload.publish import Publisher
from offload.settings import Settings
from offload_api.app import create_app
from tests.helpers import wait_for
from tests.support import Api, RunningWorker
from tests.support.webhooks import Receiver


@pytest.fixture
def api(settings: Settings, publisher: Publisher) -> Api:
    return Api(create_app(settings, publisher=publisher).test_client())


def _delivery_job(publisher: Publisher, job_id: str):
    records = [
        r
        for r in publisher.store.queries.list_jobs(tenant="acme", job_type="webhook.deliver").records
        if r.payload and r.payload["job_id"] == job_id
    ]
    return records[0] if records else None


def test_a_finished_job_calls_its_receiver_back_once_signed_as_standard_webhooks_verify(
    api: Api, publisher: Publisher, worker: RunningWorker, email_worker: dramatiq.Worker, receiver: Receiver
) -> None:
    response = api.submit("system.noop", {"echo": "call me"}, callback_url=receiver.url)
    job_id = response.get_json()["id"]
    wait_for(lambda: len(receiver.received) == 1, timeout=20)
    headers, body = receiver.received[0]
    secret = api.get("/v1/webhooks/secret").get_json()["secret"]
    event = Webhook(secret).verify(body, headers)
    assert event["type"] == "job.succeeded" and event["data"]["id"] == job_id
    assert event["data"]["result"] == {"echo": "call me"}
    delivery = _delivery_job(publisher, job_id)
    assert delivery is not None and headers["webhook-id"] == delivery.id
    wait_for(lambda: publisher.get(delivery.id).state == "succeeded", timeout=10)
    assert publisher.get(delivery.id).result == {"status": 200, "webhook_id": delivery.id}
    # The job points at its delivery, whose attempts the client can follow like any job's.
    assert api.get(f"/v1/jobs/{job_id}").get_json()["webhook_id"] == delivery.id
    assert api.get(f"/v1/jobs/{delivery.id}").get_json()["type"] == "webhook.deliver"


def test_a_delivery_is_what_the_documents_webhooks_section_says(
    api: Api, publisher: Publisher, worker: RunningWorker, email_worker: dramatiq.Worker, receiver: Receiver
) -> None:
    """Its headers match their schemas, its content type is the request body's, its body is a WebhookEvent."""
    from offload_email.webhooks import GONE_TTL, USER_AGENT

    document = api.get("/openapi.json").get_json()
    operation = document["webhooks"]["jobEnded"]["post"]
    api.submit("system.noop", {"echo": "x"}, callback_url=receiver.url)
    api.submit("system.fail", {"permanent": True}, callback_url=receiver.url)
    wait_for(lambda: len(receiver.received) == 2, timeout=20)
    (media,) = operation["requestBody"]["content"]
    body_schema = {**operation["requestBody"]["content"][media]["schema"], "components": document["components"]}
    for headers, body in receiver.received:
        for parameter in operation["parameters"]:
            assert parameter["in"] == "header" and parameter["required"]
            jsonschema.validate(headers[parameter["name"].lower()], parameter["schema"])
        assert headers["content-type"] == media == "application/json"
        jsonschema.validate(json.loads(body), body_schema)
    types = sorted(json.loads(body)["type"] for _, body in receiver.received)
    assert types == ["job.failed", "job.succeeded"]
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= {p["name"] for p in operation["parameters"]}
    assert USER_AGENT in json.dumps(operation["parameters"]) and GONE_TTL == 7 * 86_400  # "for the next 7 days"


def test_a_receiver_failing_twice_gets_three_attempts_with_the_same_webhook_id(
    api: Api, publisher: Publisher, worker: RunningWorker, email_worker: dramatiq.Worker, receiver: Receiver
) -> None:
    receiver.answers = [(500, {}), (500, {}), (200, {})]
    job_id = api.submit("system.noop", callback_url=receiver.url).get_json()["id"]
    wait_for(lambda: len(receiver.received) == 3, timeout=40, interval=0.1)
    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    stamps = [headers["webhook-timestamp"] for headers, _ in receiver.received]
    assert len(ids) == 1 and len(stamps) == 3
    delivery = _delivery_job(publisher, job_id)
    wait_for(lambda: publisher.get(delivery.id).state == "succeeded", timeout=10)
    record = publisher.get(delivery.id)
    assert record.attempts == 3
    assert [h["state"] for h in publisher.store.queries.history(delivery.id)].count("retrying") == 2


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ((410, {}), "webhook_rejected"),
        ((302, {"Location": "http://127.0.0.1:6379/"}), "webhook_redirect"),
    ],
)
def test_a_refusal_or_a_redirect_fails_the_delivery_at_once(
    api: Api,
    publisher: Publisher,
    worker: RunningWorker,
    email_worker: dramatiq.Worker,
    receiver: Receiver,
    answer: tuple[int, dict[str, str]],
    code: str,
) -> None:
    receiver.answers = [answer]
    job_id = api.submit("system.noop", callback_url=receiver.url).get_json()["id"]
    wait_for(lambda: _delivery_job(publisher, job_id) is not None, timeout=20)
    delivery = _delivery_job(publisher, job_id)
    wait_for(lambda: publisher.get(delivery.id).state == "failed", timeout=20)
    assert publisher.get(delivery.id).error_code == code and len(receiver.received) == 1


def test_a_rotated_secret_still_verifies_during_the_overlap(
    api: Api, publisher: Publisher, worker: RunningWorker, email_worker: dramatiq.Worker, receiver: Receiver
) -> None:
    old = api.get("/v1/webhooks/secret").get_json()["secret"]
    new = api.post("/v1/webhooks/secret/rotate").get_json()["secret"]
    assert new != old
    api.submit("system.noop", callback_url=receiver.url)
    wait_for(lambda: len(receiver.received) == 1, timeout=20)
    headers, body = receiver.received[0]
    assert Webhook(old).verify(body, headers) == Webhook(new).verify(body, headers) == json.loads(body)


def test_clients_cannot_submit_webhook_deliveries_themselves(api: Api) -> None:
    response = api.submit("webhook.deliver", {"job_id": "x", "url": "http://127.0.0.1/", "seq": 1})
    assert response.status_code == 422 and response.get_json()["error"] == "unknown_job_type"


def test_each_tenant_has_its_own_secret(api: Api) -> None:
    assert (
        api.get("/v1/webhooks/secret").get_json()["secret"]
        != api.as_("globex").get("/v1/webhooks/secret").get_json()["secret"]
    )
    assert api.as_("acme_reader").get("/v1/webhooks/secret").status_code == 403


def test_a_receiver_that_hangs_times_out_and_is_retried(
    publisher: Publisher, email_settings, receiver: Receiver, redis_client
) -> None:
    import requests

    from offload.contracts.webhook import DeliverWebhookPayload
    from offload.errors import TransientJobError
    from offload.publish.publisher import settings_url_policy
    from offload.status.secrets import SecretStore
    from offload.worker import JobContext
    from offload_email.webhooks import WebhookHandlers

    receiver.answers = [(0, {"seconds": "3"})]
    job = publisher.publish("system.noop", {}, tenant="acme")
    handlers = WebhookHandlers(
        store=publisher.store,
        secrets=SecretStore(publisher.store),
        url_policy=settings_url_policy(email_settings),
        session=requests.Session(),
        read_timeout=1.0,
    )
    ctx = JobContext(job_id=job.job_id, job_type="webhook.deliver", tenant="acme", attempt=1, store=publisher.store)
    with pytest.raises(TransientJobError) as caught:
        handlers.deliver(ctx, DeliverWebhookPayload(job_id=job.job_id, url=receiver.url, seq=1))
    assert caught.value.code == "webhook_timeout"


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), (" 30 ", 30.0), ("²", None), ("١٢", None), ("9" * 5000, None), ("soon", None), (None, None)],
)
def test_a_receivers_retry_after_is_ascii_seconds_or_nothing(header: str | None, seconds: float | None) -> None:
    from offload_email.webhooks import retry_after_seconds

    assert retry_after_seconds(header) == seconds
