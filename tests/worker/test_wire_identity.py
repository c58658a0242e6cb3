"""Issue 23: who publishes on the wire is the RabbitMQ user RabbitMQ checked, never what the body says.

Each test service has a RabbitMQ user of its own with a publisher's permissions (publish-only on
the test vhost): ``orders`` is mapped to tenants acme and beta, ``intruder`` to globex (system.noop
jobs only), ``stranger`` to nothing. Messages are built by hand and published with plain pika.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pika
import pika.exceptions
import pytest
from dramatiq import Message

from offload.delivery import RESERVED, delivery_of, stamp
from offload.publish import Publisher
from offload.settings import Settings
from offload.status import JobState
from offload.status.pauses import Pauses
from offload_api.app import create_app
from tests.helpers import wait_for
from tests.support import Api, RunningWorker, make_settings, queue_depth
from tests.support.wire import BrokerUser, broker_user, ended, grants, publish_as, wire_message

GRANTS = grants(
    orders={"tenants": ["acme", "beta"]},
    intruder={"tenants": ["globex"], "job_types": ["system.noop"]},
)


@pytest.fixture(scope="module")
def users() -> Iterator[dict[str, BrokerUser]]:
    with broker_user("orders") as orders, broker_user("intruder") as intruder, broker_user("stranger") as stranger:
        yield {"orders": orders, "intruder": intruder, "stranger": stranger}


@pytest.fixture
def settings(servers: None, users: dict[str, BrokerUser]) -> Settings:
    return make_settings(wire_publishers=GRANTS)


def _note(publisher: Publisher, job_id: str) -> dict[str, str]:
    wait_for(lambda: publisher.store.janitor.dead_letter_notes([job_id]) != [None], timeout=10)
    [note] = publisher.store.janitor.dead_letter_notes([job_id])
    assert note is not None
    return note


def test_a_mapped_users_jobs_are_tracked_under_its_tenants(
    users: dict[str, BrokerUser], publisher: Publisher, worker: RunningWorker
) -> None:
    own = wire_message("system.noop", "system", {"echo": "own"}, tenant=None)  # no tenant: the user's first
    named = wire_message("system.noop", "system", {"echo": "named"}, tenant="beta", priority="high", tags=["wire"])
    publish_as(users["orders"], "system", own)
    publish_as(users["orders"], "system", named)
    first = ended(publisher, own["message_id"])
    assert first.state is JobState.SUCCEEDED and first.tenant == "acme" and first.result == {"echo": "own"}
    second = ended(publisher, named["message_id"])
    assert second.state is JobState.SUCCEEDED and second.tenant == "beta"
    assert second.priority == "high" and second.tags == ["wire"]
    assert publisher.get(named["message_id"], tenant="acme") is None  # beta's, not acme's


def test_a_message_claiming_another_tenant_or_type_is_refused_under_its_own_tenant_and_runs_nothing(
    users: dict[str, BrokerUser], publisher: Publisher, worker: RunningWorker
) -> None:
    claim = wire_message("system.noop", "system", {"echo": "as acme"}, tenant="acme")
    other_type = wire_message("system.sleep", "system", {"ms": 1}, tenant="globex")
    publish_as(users["intruder"], "system", claim)
    publish_as(users["intruder"], "system", other_type)
    for message, code in ((claim, "tenant_not_allowed"), (other_type, "job_type_not_allowed")):
        record = ended(publisher, message["message_id"])
        assert record.state is JobState.DEAD and record.error_code == code, record
        assert record.tenant == "globex" and record.attempts == 0 and record.started_at is None
        assert publisher.get(message["message_id"], tenant="acme") is None
    assert [r.id for r in publisher.store.queries.list_jobs(tenant="acme").records] == []


def test_a_message_without_user_id_or_from_an_unmapped_user_is_refused_and_runs_nothing(
    users: dict[str, BrokerUser], publisher: Publisher, worker: RunningWorker
) -> None:
    anonymous = wire_message("system.noop", "system", {}, tenant="acme")
    publish_as(users["orders"], "system", anonymous, user_id=None)
    unmapped = wire_message("system.noop", "system", {}, tenant="acme")
    publish_as(users["stranger"], "system", unmapped)
    for message in (anonymous, unmapped):
        assert _note(publisher, message["message_id"])["code"] == "unauthenticated_publisher"
        assert publisher.get(message["message_id"]) is None  # no tenant could be named: no record, nothing ran
    wait_for(lambda: queue_depth("system.XQ") == 2, timeout=5)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="user_id"):  # RabbitMQ checks it
        publish_as(users["stranger"], "system", wire_message("system.noop", "system", {}), user_id=users["orders"].name)


def test_a_replayed_job_id_of_another_tenants_queued_job_is_refused_and_the_victim_runs_once_as_it_was(
    users: dict[str, BrokerUser], publisher: Publisher, worker: RunningWorker
) -> None:
    pauses = Pauses(publisher.store)
    pauses.pause("system.noop")
    time.sleep(1.2)  # workers read the paused set at most a second old
    victim = publisher.publish("system.noop", {"echo": "victim"}, tenant="globex")
    wait_for(lambda: pauses.parked_count("system.noop") == 1, timeout=10, message="the victim was not parked")
    for user, tenant in ((users["orders"], "acme"), (users["intruder"], "globex")):
        replay = wire_message("system.noop", "system", {"echo": "evil"}, tenant=tenant, job_id=victim.job_id)
        publish_as(user, "system", replay)
    wait_for(lambda: queue_depth("system.XQ") == 2, timeout=10, message="the replays were not dead-lettered")
    assert _note(publisher, victim.job_id)["code"] == "duplicate_job_id"
    record = publisher.get(victim.job_id)
    assert record is not None and record.state is JobState.QUEUED and record.tenant == "globex"
    assert record.payload == {"echo": "victim"}
    pauses.resume("system.noop")
    done = ended(publisher, victim.job_id)
    assert done.state is JobState.SUCCEEDED and done.result == {"echo": "victim"} and done.attempts == 1


def test_a_delayed_wire_job_is_scheduled_and_runs_when_due_not_before(
    users: dict[str, BrokerUser], publisher: Publisher, worker: RunningWorker
) -> None:
    message = wire_message("system.noop", "system", {"echo": "later"}, delay=2)
    publish_as(users["orders"], "system", message)
    job_id = message["message_id"]
    wait_for(lambda: publisher.get(job_id) is not None, timeout=10)
    record = publisher.get(job_id)
    assert record is not None and record.state is JobState.SCHEDULED and record.scheduled_for is not None
    time.sleep(1.0)
    record = publisher.get(job_id)
    assert record is not None and record.state is JobState.SCHEDULED  # not before it is due
    done = ended(publisher, job_id, timeout=20)
    assert done.state is JobState.SUCCEEDED and done.started_at is not None and done.scheduled_for is not None
    assert done.started_at >= done.scheduled_for and done.attempts == 1


def test_an_idempotency_key_makes_the_same_message_the_same_job_and_another_body_a_conflict(
    users: dict[str, BrokerUser], settings: Settings, publisher: Publisher, worker: RunningWorker
) -> None:
    key = f"order-{uuid.uuid4()}"
    first = wire_message("system.noop", "system", {"echo": "once"}, idempotency_key=key)
    again = wire_message("system.noop", "system", {"echo": "once"}, idempotency_key=key)
    other = wire_message("system.noop", "system", {"echo": "changed"}, idempotency_key=key)
    publish_as(users["orders"], "system", first)
    assert ended(publisher, first["message_id"]).state is JobState.SUCCEEDED
    publish_as(users["orders"], "system", again)
    publish_as(users["orders"], "system", other)
    refused = ended(publisher, other["message_id"])
    assert refused.state is JobState.DEAD and refused.error_code == "idempotency_conflict"
    assert first["message_id"] in (refused.error_message or "") and refused.tenant == "acme"
    assert publisher.get(again["message_id"]) is None  # the same job as the first: not a second one
    record = publisher.get(first["message_id"])
    assert record is not None and record.attempts == 1
    # the key's namespace is the tenant's, shared with HTTP: the same submission there is the same job
    api = Api(create_app(settings, publisher=publisher).test_client())
    http = api.post(
        "/v1/jobs", json={"type": "system.noop", "payload": {"echo": "once"}}, headers={"Idempotency-Key": key}
    )
    assert http.status_code == 200 and http.get_json()["id"] == first["message_id"]


def test_wire_options_break_the_rules_http_applies_with_the_same_errors(
    users: dict[str, BrokerUser], publisher: Publisher, worker: RunningWorker
) -> None:
    cases = {
        "url_not_allowed": wire_message("system.noop", "system", {}, callback_url="http://10.1.2.3/hook"),
        "validation_failed": wire_message("system.noop", "system", {}, delay=-1),
    }
    unknown = wire_message("system.noop", "system", {}, colour="red")
    for message in (*cases.values(), unknown):
        publish_as(users["orders"], "system", message)
    for code, message in cases.items():
        record = ended(publisher, message["message_id"])
        assert record.state is JobState.DEAD and record.error_code == code, record
    record = ended(publisher, unknown["message_id"])
    assert record.error_code == "validation_failed"
    assert record.public()["error"]["errors"][0]["field"] == "options.offload.colour"


def test_a_trusted_re_publication_keeps_the_first_publisher_and_a_body_cannot_claim_one() -> None:
    class Props:
        def __init__(self, user_id: str | None, headers: dict[str, object] | None = None) -> None:
            self.user_id, self.headers = user_id, headers

    trusted = frozenset({"offload"})
    forged: dict[str, object] = {RESERVED: {"user_id": "offload", "publisher": "offload"}}
    stamp(forged, Props("orders", {"x": b"1"}), trusted)
    assert delivery_of(type("M", (), {"options": forged})()).publisher == "orders"  # the body's claim is replaced
    stamp(forged, Props("offload"), trusted)  # Dramatiq's retry, re-published by a worker
    assert delivery_of(type("M", (), {"options": forged})()).publisher == "orders"
    plain: dict[str, object] = {}
    stamp(plain, Props(None), trusted)
    assert delivery_of(type("M", (), {"options": plain})()).publisher is None


def test_a_workers_re_publication_keeps_a_strangers_message_a_strangers(
    users: dict[str, BrokerUser], publisher: Publisher, worker: RunningWorker
) -> None:
    """What Dramatiq publishes again itself (a delivery retried after Redis failed, through the worker's
    broker, as Offload's user) is still its first publisher's: adopted under that user's rules."""
    forwarded = wire_message("system.noop", "system", {"echo": "retried"}, tenant=None)
    forwarded["options"][RESERVED] = {"publisher": users["orders"].name}  # as the consumer stamped it
    worker.broker.enqueue(Message(**{**forwarded, "args": (), "options": forwarded["options"]}))
    record = ended(publisher, forwarded["message_id"])
    assert record.state is JobState.SUCCEEDED and record.tenant == "acme"  # orders' own tenant, by adoption
    claimed = wire_message("system.noop", "system", {"echo": "claimed"}, tenant="beta")
    claimed["options"][RESERVED] = {"publisher": users["intruder"].name}  # mapped to globex only
    worker.broker.enqueue(Message(**{**claimed, "args": (), "options": claimed["options"]}))
    refused = ended(publisher, claimed["message_id"])
    assert refused.error_code == "tenant_not_allowed" and refused.tenant == "globex" and refused.attempts == 0
