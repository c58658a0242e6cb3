"""The live catalogue against real Redis: a registered type appears, a retired one goes, Redis down keeps the view."""

from __future__ import annotations

import time

from offload.catalogue import Catalogue, retire
from offload.contracts import JobContract, Payload
from offload.contracts.registered import RegisteredContract
from offload.status import StatusStore
from offload.status.catalogue import ContractStore
from offload.worker.registration import cards_for, register
from tests.helpers import free_port


class Echo(Payload):
    """Some words."""

    words: list[str]


ECHO = JobContract(name="team.echo", queue="team", payload=Echo, description="Echo words.")


def test_a_registered_type_is_seen_within_the_refresh_and_a_retired_one_goes(redis_client) -> None:
    store = ContractStore(StatusStore(redis_client))
    catalogue = Catalogue(store, refresh_s=0.05)
    assert "team.echo" not in catalogue and "system.noop" in catalogue
    assert register(store, cards_for([ECHO], service="team"))
    time.sleep(0.06)
    found = catalogue.get("team.echo")
    assert isinstance(found, RegisteredContract) and found.queue == "team" and "team" in catalogue.queues
    card = catalogue.card("team.echo")
    assert card is not None and card["service"] == "team"
    assert retire(store, "team.echo") == "retired"
    time.sleep(0.06)
    assert "team.echo" not in catalogue


def test_with_redis_unreachable_the_catalogue_keeps_its_view_and_raises_nothing() -> None:
    unreachable = StatusStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    catalogue = Catalogue(ContractStore(unreachable), refresh_s=0.0)
    started = time.monotonic()
    for _ in range(50):
        assert "email.send" in catalogue and "team.echo" not in catalogue
    assert time.monotonic() - started < 2.0  # one failed look, then none until FAILED_REFRESH_S
