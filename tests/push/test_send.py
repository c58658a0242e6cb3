"""push.send end to end: the API, RabbitMQ, the email service's worker and a real push service on loopback.

The push service (``tests/support/push.py``) verifies each request's VAPID JWT and decrypts its
body with the browser's private key, so these tests assert on what the user would see.
"""

from __future__ import annotations

import time

import dramatiq
import pytest

from offload.contracts.push import MAX_ENCRYPTED_BYTES
from offload.publish import Publisher
from offload.settings import Settings
from offload.vapid import public_key_of
from offload_api.app import create_app
from offload_email.settings import EmailSettings
from tests.helpers import wait_for
from tests.support import Api
from tests.support.push import PushService

SHIPPED = {
    "title": "Your order shipped",
    "body": "Parcel 42 is on its way — track it: ✓",
    "url": "https://shop.example.com/orders/42",
    "urgency": "high",
    "ttl": 3600,
    "topic": "order-42",
}


@pytest.fixture
def api(settings: Settings, publisher: Publisher) -> Api:
    return Api(create_app(settings, publisher=publisher).test_client())


def _subscribe(api: Api, push_service: PushService, token: str, user: str, *answers) -> str:
    _, subscription = push_service.subscribe(token, *answers)
    response = api.post("/v1/push/subscriptions", json={**subscription, "user_id": user})
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def test_a_user_with_three_browsers_one_gone_sees_two_messages_and_the_gone_one_is_removed(
    api: Api,
    publisher: Publisher,
    push_service: PushService,
    push_worker: dramatiq.Worker,
    push_settings: EmailSettings,
) -> None:
    answers: dict[str, tuple[int | str, dict[str, str]]] = {
        "laptop": (201, {}),
        "phone": (201, {}),
        "old-tablet": (410, {}),
    }
    ids = {token: _subscribe(api, push_service, token, "ada", answer) for token, answer in answers.items()}
    _subscribe(api, push_service, "someone-else", "bob")
    public_key = api.anonymous_get("/v1/push/vapid-public-key").get_json()["public_key"]
    assert public_key == public_key_of(push_settings.vapid_private_key.get_secret_value())

    response = api.submit("push.send", {"user_id": "ada", **SHIPPED})
    assert response.status_code == 202, response.get_json()
    record = publisher.wait(response.get_json()["id"], timeout=20)

    assert record.state == "succeeded", record
    assert record.result["sent"] == 2 and record.result["gone"] == 1
    assert record.result["rejected"] == record.result["failed"] == 0
    outcomes = {o["subscription_id"]: o for o in record.result["subscriptions"]}
    assert outcomes[ids["old-tablet"]]["status"] == "gone" and outcomes[ids["old-tablet"]]["http_status"] == 410
    assert {outcomes[ids[t]]["status"] for t in ("laptop", "phone")} == {"sent"}
    # What each browser decrypted is what the user sees; each request carried a valid VAPID JWT.
    for token in ("laptop", "phone", "old-tablet"):
        [delivery] = push_service.deliveries(token)
        assert delivery.problem is None, delivery.problem
        assert delivery.message == {"title": SHIPPED["title"], "body": SHIPPED["body"], "url": SHIPPED["url"]}
        assert delivery.claims is not None and delivery.claims["k"] == public_key
        assert delivery.claims["aud"] == push_service.origin and delivery.claims["sub"] == "mailto:ops@example.com"
        assert delivery.headers["ttl"] == "3600" and delivery.headers["urgency"] == "high"
        assert delivery.headers["topic"] == "order-42"
    assert push_service.deliveries("someone-else") == []
    # The gone subscription was removed; the others stay.
    listed = api.get("/v1/push/subscriptions?user_id=ada").get_json()["subscriptions"]
    assert sorted(s["id"] for s in listed) == sorted([ids["laptop"], ids["phone"]])


def test_a_redelivered_push_job_sends_nothing_twice(
    api: Api, publisher: Publisher, push_service: PushService, push_worker: dramatiq.Worker
) -> None:
    for token in ("a", "b", "c"):
        _subscribe(api, push_service, token, "ada")
    job_id = api.submit("push.send", {"user_id": "ada", "title": "Once"}).get_json()["id"]
    first = publisher.wait(job_id, timeout=20)
    assert first.state == "succeeded" and first.result["sent"] == 3 and len(push_service.deliveries()) == 3
    # The worker died after sending and before recording success: the job is redelivered as running.
    store = publisher.store
    store.client.hset(store.keys.job(job_id), mapping={"state": "running"})
    message = store.queries.stored_message(job_id)
    assert message is not None
    publisher.republish(message)
    wait_for(lambda: publisher.get(job_id).attempts == 2 and publisher.get(job_id).state == "succeeded", timeout=15)
    assert len(push_service.deliveries()) == 3
    assert publisher.get(job_id).result == first.result


def test_a_subscription_marked_sending_by_a_dead_attempt_is_not_sent_again(
    api: Api, publisher: Publisher, push_service: PushService, push_worker: dramatiq.Worker
) -> None:
    """The worker died between writing a subscription's "sending" entry and hearing back: that one is not resent."""
    import json

    ids = [_subscribe(api, push_service, token, "ada") for token in ("a", "b")]
    prepared = publisher.preparer.prepare(
        {"type": "push.send", "payload": {"user_id": "ada", "title": "x"}}, tenant="acme"
    )
    unconfirmed = {"subscription_id": ids[0], "user_id": "ada", "status": "sent", "detail": "Unconfirmed"}
    publisher.store.client.hset(publisher.store.keys.effect("push", prepared.job_id), ids[0], json.dumps(unconfirmed))
    publisher.enqueue(prepared)
    record = publisher.wait(prepared.job_id, timeout=20)
    assert record.state == "succeeded" and record.result["sent"] == 2
    assert [d.token for d in push_service.deliveries()] == ["b"]


def test_a_throttled_push_service_is_retried_after_its_retry_after_and_gets_the_message_once(
    api: Api, publisher: Publisher, push_service: PushService, push_worker: dramatiq.Worker
) -> None:
    _subscribe(api, push_service, "busy", "ada", (429, {"Retry-After": "2"}), (201, {}))
    _subscribe(api, push_service, "fine", "ada")
    job_id = api.submit("push.send", {"user_id": "ada", "title": "Later"}).get_json()["id"]
    record = publisher.wait(job_id, timeout=30)
    assert record.state == "succeeded" and record.result["sent"] == 2 and record.attempts == 2
    busy, fine = push_service.deliveries("busy"), push_service.deliveries("fine")
    assert len(busy) == 2 and len(fine) == 1  # the one that took it the first time is not sent again
    waited = busy[1].at - busy[0].at
    assert waited >= 1.9, f"retried {waited:.2f} s after a Retry-After of 2 s"
    history = publisher.store.queries.history(job_id)
    retrying = [h for h in history if h["state"] == "retrying"]
    assert len(retrying) == 1 and retrying[0]["error"]["code"] == "push_throttled"


@pytest.mark.parametrize("answer", [(500, {}), ("stall", {"seconds": "3"})])
def test_a_push_service_failing_to_the_last_attempt_is_reported_failed_and_the_others_sent(
    api: Api,
    publisher: Publisher,
    push_service: PushService,
    push_worker: dramatiq.Worker,
    answer: tuple[int | str, dict[str, str]],
) -> None:
    sub_id = _subscribe(api, push_service, "broken", "ada", answer)
    _subscribe(api, push_service, "fine", "ada")
    job_id = api.submit("push.send", {"user_id": "ada", "title": "Hello"}, max_retries=1).get_json()["id"]
    record = publisher.wait(job_id, timeout=40)
    assert record.state == "succeeded" and record.attempts == 2, record
    assert record.result["sent"] == 1 and record.result["failed"] == 1
    [failed] = [o for o in record.result["subscriptions"] if o["status"] == "failed"]
    assert failed["subscription_id"] == sub_id
    expected = "answered 500" if answer[0] == 500 else "did not answer in time"
    assert expected in failed["detail"]
    assert len(push_service.deliveries("broken")) == 2 and len(push_service.deliveries("fine")) == 1
    # The subscription is kept: a failing push service is not a browser that unsubscribed.
    assert len(api.get("/v1/push/subscriptions?user_id=ada").get_json()["subscriptions"]) == 2


def test_another_4xx_is_rejected_without_a_retry_and_the_subscription_kept(
    api: Api, publisher: Publisher, push_service: PushService, push_worker: dramatiq.Worker
) -> None:
    _subscribe(api, push_service, "refuses", "ada", (403, {}))
    job_id = api.submit("push.send", {"user_ids": ["ada", "nobody"], "title": "Hi"}).get_json()["id"]
    record = publisher.wait(job_id, timeout=20)
    assert record.state == "succeeded" and record.attempts == 1
    assert record.result["rejected"] == 1 and record.result["subscriptions"][0]["http_status"] == 403
    assert len(api.get("/v1/push/subscriptions?user_id=ada").get_json()["subscriptions"]) == 1


def test_a_message_over_the_push_services_limit_is_422_at_submission(api: Api, publisher: Publisher) -> None:
    body = "é" * 1990  # 3,980 bytes of UTF-8: with the title and the encryption, over 4,096
    response = api.submit("push.send", {"user_id": "ada", "title": "Big", "body": body})
    assert response.status_code == 422
    error = response.get_json()
    assert error["error"] == "push_message_too_large"
    assert str(MAX_ENCRYPTED_BYTES) in error["errors"][0]["problem"]
    # Just under the limit is accepted.
    fits = {"user_id": "ada", "title": "Big", "body": "é" * 1980}
    assert api.submit("push.send", fits).status_code == 202


def test_without_a_vapid_key_push_send_fails_push_not_configured(
    api: Api, publisher: Publisher, email_settings: EmailSettings, push_service: PushService
) -> None:
    from offload.testing import serving
    from offload_email.worker import SPEC

    _subscribe(api, push_service, "a", "ada")
    with serving(SPEC, email_settings, threads=2):
        job_id = api.submit("push.send", {"user_id": "ada", "title": "x"}).get_json()["id"]
        record = publisher.wait(job_id, timeout=20)
    assert record.state == "failed" and record.error_code == "push_not_configured"
    assert push_service.deliveries() == []
    response = api.anonymous_get("/v1/push/vapid-public-key")
    assert response.status_code == 404 and response.get_json()["error"] == "push_not_configured"


def test_sends_to_one_push_service_share_its_rate(
    api: Api,
    publisher: Publisher,
    push_service: PushService,
    push_settings: EmailSettings,
) -> None:
    from offload.testing import serving
    from offload_email.worker import SPEC

    for index in range(9):
        _subscribe(api, push_service, f"s{index}", "ada")
    started = time.monotonic()
    with serving(SPEC, push_settings.model_copy(update={"push_rate_per_second": 3}), threads=2):
        job_id = api.submit("push.send", {"user_id": "ada", "title": "x"}).get_json()["id"]
        record = publisher.wait(job_id, timeout=30)
    assert record.state == "succeeded" and record.result["sent"] == 9
    arrivals = sorted(d.at for d in push_service.deliveries())
    # 3 per one-second window: 9 messages need three windows, so the first and the last are over 1 s apart.
    assert arrivals[-1] - arrivals[0] > 1.0, arrivals
    assert time.monotonic() - started < 25


def test_a_404_is_gone_too_and_a_later_job_no_longer_sends_to_it(
    api: Api, publisher: Publisher, push_service: PushService, push_worker: dramatiq.Worker
) -> None:
    sub_id = _subscribe(api, push_service, "expired", "ada", (404, {}))
    first = publisher.wait(api.submit("push.send", {"user_id": "ada", "title": "1"}).get_json()["id"], timeout=20)
    assert first.result["gone"] == 1 and first.result["subscriptions"][0]["subscription_id"] == sub_id
    second = publisher.wait(api.submit("push.send", {"user_id": "ada", "title": "2"}).get_json()["id"], timeout=20)
    assert second.state == "succeeded" and second.result["subscriptions"] == []
    assert len(push_service.deliveries("expired")) == 1


def test_a_cancelled_push_job_starts_no_new_request(
    api: Api, publisher: Publisher, push_service: PushService, push_settings: EmailSettings
) -> None:
    from offload.testing import serving
    from offload_email.worker import SPEC

    _subscribe(api, push_service, "slow", "ada", ("stall", {"seconds": "1"}))
    for token in ("later-1", "later-2"):
        time.sleep(0.01)  # subscriptions are sent oldest first
        _subscribe(api, push_service, token, "ada")
    with serving(SPEC, push_settings.model_copy(update={"push_concurrency": 1}), threads=2):  # one at a time
        job_id = api.submit("push.send", {"user_id": "ada", "title": "Stop"}).get_json()["id"]
        wait_for(lambda: len(push_service.deliveries("slow")) == 1, timeout=20)
        assert api.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)
        record = publisher.wait(job_id, timeout=20)
    assert record.state == "cancelled"
    assert push_service.deliveries("later-1") == push_service.deliveries("later-2") == []
