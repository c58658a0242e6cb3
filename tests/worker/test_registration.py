"""A worker's heartbeat counts it live only for the job types of the queues it consumes (real Redis)."""

from __future__ import annotations

from types import SimpleNamespace

from offload.contracts import BUILT_IN
from offload.status import StatusStore
from offload.status.catalogue import ContractStore
from offload.worker.registration import Heartbeat, cards_for, register


def test_a_worker_started_with_some_queues_is_live_only_for_their_types(redis_client) -> None:
    store = ContractStore(StatusStore(redis_client))
    cards = cards_for([BUILT_IN.get("email.send"), BUILT_IN.get("webhook.deliver")], service="email")
    assert register(store, cards)
    heartbeat = Heartbeat(store, cards, registered=True)
    heartbeat.after_worker_boot(None, SimpleNamespace(consumer_whitelist={"email", "system"}))  # type: ignore[arg-type]
    try:
        heartbeat.beat()
        assert store.live_workers(["email.send", "webhook.deliver"]) == {"email.send": 1, "webhook.deliver": 0}
    finally:
        heartbeat.before_worker_shutdown(None, None)  # type: ignore[arg-type]
    assert store.live_workers(["email.send"]) == {"email.send": 0}
    _, registered = store.cards()
    assert set(registered) == {"email.send", "webhook.deliver"}  # both contracts stay known


def test_a_registration_beyond_the_catalogue_limit_is_refused(redis_client) -> None:
    store = ContractStore(StatusStore(redis_client))
    cards = cards_for([BUILT_IN.get("system.noop"), BUILT_IN.get("system.sleep")], service="system")
    assert store.register(cards[:1], limit=1) is None
    refused = store.register(cards, limit=1)
    assert refused is not None and getattr(refused, "limit", None) == 1
    assert store.register(cards[:1], limit=1) is None  # re-registering a known type is not growth


def test_a_contract_too_large_for_the_catalogue_is_refused_at_boot_with_its_reason() -> None:
    import pytest
    from pydantic import Field

    from offload.contracts import JobContract, Payload
    from offload.errors import ConfigError

    class Huge(Payload):
        """A payload whose schema is over 64 KiB."""

        text: str = Field(description="x" * 70_000)

    contract = JobContract(name="text.huge", queue="text", payload=Huge, description="Too large to register.")
    with pytest.raises(ConfigError, match="text.huge.*65536"):
        cards_for([contract], service="text")
