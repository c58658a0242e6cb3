"""The live catalogue against real Redis: a registered type appears, a retired one goes, Redis down keeps the view."""

from __future__ import annotations

import time
from dataclasses import replace

from offload.catalogue import Catalogue, retire
from offload.contracts import JobContract, Payload, SubmissionPolicy
from offload.contracts.email import SendEmailPayload
from offload.contracts.registered import RegisteredContract
from offload.status import StatusStore
from offload.status.catalogue import ContractStore
from offload.worker.app import served_contracts, spec_cards
from offload.worker.registration import cards_for, register
from offload_email.settings import EmailSettings
from offload_email.worker import SPEC as EMAIL
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


def test_the_serving_workers_settings_decide_a_types_policy_wherever_it_is_submitted(redis_client) -> None:
    # The email worker's settings size the email quota and the recipient domains; a process that
    # imports email.send itself (the API) still applies the policy the worker registered.
    store = ContractStore(StatusStore(redis_client))
    catalogue = Catalogue(store, refresh_s=0.0)
    assert catalogue.get("email.send").policy == SubmissionPolicy(quota_per_hour=10_000)  # the declared default
    settings = EmailSettings(email_quota_per_hour=5, email_allowed_domains="Example.com., *.example.org")
    assert register(store, spec_cards(EMAIL, served_contracts(EMAIL, settings)))
    sent = catalogue.get("email.send")
    assert sent.payload is SendEmailPayload  # still validated with its own model
    assert sent.policy == SubmissionPolicy(quota_per_hour=5, recipient_domains=("example.com", "*.example.org"))
    assert (
        catalogue.get("email.batch").policy == sent.policy and catalogue.get("system.noop").policy.quota_per_hour == 0
    )
    assert sent.policy.allows_recipient("a@example.com") and sent.policy.allows_recipient("b@mx.example.org")
    assert not sent.policy.allows_recipient("c@example.org") and not sent.policy.allows_recipient("d@example.com.evil")
    # A type the process cannot import carries its registered policy too.
    limited = replace(ECHO, quota="words", policy=SubmissionPolicy(quota_per_hour=7))
    assert register(store, cards_for([limited], service="team"))
    assert catalogue.get("team.echo").policy == SubmissionPolicy(quota_per_hour=7)
