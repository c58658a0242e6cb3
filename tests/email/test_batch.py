"""email.batch end to end: one SMTP session, an outcome per recipient, resumable after redelivery."""

from __future__ import annotations

import json
from typing import Any

import dramatiq

from offload.publish import Publisher
from tests.support.email import Sink


def _batch(n: int) -> dict:
    return {
        "template": "order_confirmation",
        "vars": {"total": "10 EUR"},
        "recipients": [
            {"email": f"user{i}@example.com", "vars": {"name": f"User {i}", "order_id": f"A-{i}"}} for i in range(n)
        ],
    }


def test_a_batch_of_200_with_3_refused_sends_197_lists_3_rejected_and_uses_one_session(
    publisher: Publisher, email_worker: dramatiq.Worker, smtp_sink: tuple[Sink, int]
) -> None:
    sink, _ = smtp_sink
    for i in (5, 50, 150):
        sink.reject[f"user{i}@example.com"] = f"550 5.1.1 <user{i}@example.com>: Recipient address rejected"
    job = publisher.publish("email.batch", _batch(200), tenant="acme")
    record = publisher.wait(job.job_id, timeout=60)
    assert record is not None and record.state == "succeeded", record
    result = record.result
    assert (result["sent"], result["rejected"], result["failed"]) == (197, 3, 0)
    rejected = [r for r in result["recipients"] if r["status"] == "rejected"]
    assert [r["email"] for r in rejected] == ["user5@example.com", "user50@example.com", "user150@example.com"]
    assert all(r["reply"].startswith("550 5.1.1") for r in rejected), rejected
    assert len(sink.messages) == 197 and len(sink.sessions) == 1
    first = next(m for m in sink.messages if m["To"] == "user0@example.com")
    assert first["Message-ID"] == f"<{job.job_id}.0@offload.local>" and "A-0" in first["Subject"]
    assert "User 0" in first.get_body(("plain",)).get_content() and "10 EUR" in first.get_body(("plain",)).get_content()


def test_a_redelivered_batch_resumes_without_sending_twice(
    publisher: Publisher, email_worker: dramatiq.Worker, smtp_sink: tuple[Sink, int]
) -> None:
    sink, _ = smtp_sink
    prepared = publisher.preparer.prepare({"type": "email.batch", "payload": _batch(20)}, tenant="acme")
    # Given a first attempt that sent to the first 8 recipients before its worker died,
    done_key = publisher.store.keys.effect("email-batch", prepared.job_id)
    for i in range(8):
        outcome = {
            "email": f"user{i}@example.com",
            "status": "sent",
            "reply": None,
            "message_id": f"<{prepared.job_id}.{i}@offload.local>",
        }
        publisher.store.client.hset(done_key, str(i), json.dumps(outcome))
    # when the job is delivered again, then only the other 12 are sent, and the result covers all 20.
    publisher.enqueue(prepared)
    record = publisher.wait(prepared.job_id, timeout=30)
    assert record.state == "succeeded" and record.result["sent"] == 20
    assert sorted(m["To"] for m in sink.messages) == sorted(f"user{i}@example.com" for i in range(8, 20))


def test_a_batch_missing_a_required_variable_is_422_naming_the_recipient(publisher: Publisher) -> None:
    from offload.errors import ValidationFailed

    body = _batch(3)
    del body["recipients"][2]["vars"]["order_id"]
    try:
        publisher.publish("email.batch", body, tenant="acme")
    except ValidationFailed as exc:
        assert "recipients[2]" in exc.errors[0]["problem"]
    else:
        raise AssertionError("a batch with a missing variable was accepted")


def test_the_providers_send_rate_is_respected_across_a_batch(servers, redis_client, clean_broker, smtp_sink) -> None:

    from offload.contracts.email import Recipient
    from offload.status import StatusStore
    from offload.status.rates import SendRate
    from offload_email.compose import compose_message
    from offload_email.mailer import SmtpMailer
    from offload_email.settings import EmailSettings

    sink, port = smtp_sink
    rate = SendRate(StatusStore(redis_client, prefix="offloadtest"), "smtp", per_second=5)
    granted: list[str] = []
    backend = rate.limiter.backend
    incr_and_sum = backend.incr_and_sum

    def recorded_incr(key: str, *args: Any, **kwargs: Any) -> bool:
        # Record the window each slot was counted in (the Redis key of its wall-clock second):
        # the window itself, not a clock read after the grant, which may already be the next second.
        ok = bool(incr_and_sum(key, *args, **kwargs))
        if ok:
            granted.append(key)
        return ok

    backend.incr_and_sum = recorded_incr
    mailer = SmtpMailer(EmailSettings(smtp_port=port), rate)
    with mailer.session() as session:
        for i in range(12):
            message = compose_message(
                "welcome",
                {"name": "U"},
                to=[Recipient(email=f"u{i}@example.com")],
                job_id="j",
                message_id=f"<j.{i}@t>",
                sender="t@example.com",
            )
            session.send(message)
    # The limiter's windows are wall-clock seconds: no second granted more than 5 of the 12 slots.
    per_second = {window: granted.count(window) for window in granted}
    assert max(per_second.values()) <= 5 and len(per_second) >= 3 and len(sink.messages) == 12
