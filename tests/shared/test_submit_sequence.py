"""The submit sequence's bookkeeping, on a broker in memory (the same paths run on RabbitMQ elsewhere).

Quota units are held for the whole sequence and given back in one place, unless the job went
through: a refused publish, a replayed idempotency key or a refused batch member costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from offload.contracts import BUILT_IN, SubmissionPolicy, email
from offload.errors import BrokerUnavailable, QuotaExceeded, ValidationFailed
from offload.publish import MemoryTransport, Publisher
from offload.publish.wiring import build_publisher
from offload.status import JobState
from tests.support import make_settings

EMAIL = {"to": [{"email": "ada@example.com"}], "template": "welcome", "vars": {"name": "Ada"}}


@pytest.fixture
def memory(redis_client) -> Iterator[tuple[Publisher, MemoryTransport]]:
    transport = MemoryTransport()
    quota = replace(email.SEND, policy=SubmissionPolicy(quota_per_hour=3))
    publisher = build_publisher(make_settings(), local=[*BUILT_IN, quota], transport=transport)
    yield publisher, transport
    publisher.close()


def test_a_published_job_keeps_its_quota_and_its_message_is_on_the_queue(memory) -> None:
    publisher, transport = memory
    submitted = publisher.publish("email.send", EMAIL, tenant="acme")
    assert submitted.state == "queued" and publisher.get(submitted.job_id).state is JobState.QUEUED
    [(body, priority)] = transport.queues["email"]
    assert submitted.job_id.encode() in body and priority is not None
    for _ in range(2):
        publisher.publish("email.send", EMAIL, tenant="acme")
    with pytest.raises(QuotaExceeded):
        publisher.publish("email.send", EMAIL, tenant="acme")
    assert len(transport.queues["email"]) == 3


def test_a_refused_publish_withdraws_the_record_and_gives_the_quota_back(memory) -> None:
    publisher, transport = memory
    transport.refusing.add("email")
    for _ in range(5):  # more than the quota: every refused one gave its unit back
        with pytest.raises(BrokerUnavailable):
            publisher.publish("email.send", EMAIL, tenant="acme")
    assert publisher.store.queries.list_jobs(tenant="acme").records == []
    transport.refusing.clear()
    for _ in range(3):
        publisher.publish("email.send", EMAIL, tenant="acme")


def test_an_idempotent_replay_costs_no_quota(memory) -> None:
    publisher, transport = memory
    first = publisher.publish("email.send", EMAIL, tenant="acme", idempotency_key="k1")
    for _ in range(4):
        again = publisher.publish("email.send", EMAIL, tenant="acme", idempotency_key="k1")
        assert again.job_id == first.job_id and again.replayed
    assert len(transport.queues["email"]) == 1
    publisher.publish("email.send", EMAIL, tenant="acme")
    publisher.publish("email.send", EMAIL, tenant="acme")


def test_a_batch_whose_broker_is_down_keeps_nothing(memory) -> None:
    publisher, transport = memory
    transport.down = True
    with pytest.raises(BrokerUnavailable):
        publisher.submit_batch([{"type": "email.send", "payload": EMAIL}] * 3, tenant="acme")
    assert publisher.store.queries.list_jobs(tenant="acme").records == []
    transport.down = False
    accepted = publisher.submit_batch([{"type": "email.send", "payload": EMAIL}] * 3, tenant="acme")
    assert len(accepted.jobs) == 3 and len(transport.queues["email"]) == 3


def test_submit_many_records_independent_jobs_or_none_and_a_refused_one_costs_nothing(memory) -> None:
    publisher, transport = memory
    bodies = [{"type": "email.send", "payload": EMAIL}, {"type": "email.send", "payload": {"to": []}}]
    with pytest.raises(ValidationFailed) as refused:
        publisher.submit_many(bodies, tenant="acme")
    assert refused.value.message.startswith("jobs[1]:") and all(
        e["field"].startswith("jobs[1]") for e in refused.value.errors
    )
    assert publisher.store.queries.list_jobs(tenant="acme").records == []  # all or none
    transport.refusing.add("email")
    with pytest.raises(BrokerUnavailable):
        publisher.submit_many(bodies[:1] * 2, tenant="acme")
    assert publisher.store.queries.list_jobs(tenant="acme").records == []
    transport.refusing.clear()
    accepted = publisher.submit_many(bodies[:1] * 3, tenant="acme")  # the refused ones gave their quota back
    assert [s.state for s in accepted] == ["queued"] * 3 and len(transport.queues["email"]) == 3
    for submitted in accepted:
        record = publisher.get(submitted.job_id)
        assert record is not None and record.flow_id is None  # no batch around them: nothing counts their ends
