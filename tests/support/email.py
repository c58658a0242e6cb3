"""A real SMTP server (aiosmtpd on 127.0.0.1) that records what arrives, and an email worker in-process."""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import dramatiq
import pytest
from aiosmtpd.controller import Controller

from offload.catalogue import Catalogue
from offload.publish import Publisher
from offload.status.catalogue import ContractStore
from offload.testing import serving
from offload.worker.app import served_contracts, spec_cards
from offload.worker.registration import register
from offload_email.settings import EmailSettings
from offload_email.worker import SPEC
from tests.helpers import free_port
from tests.support import make_settings


@dataclass
class Sink:
    """What the SMTP server received, and how it should answer recipients."""

    messages: list[EmailMessage] = field(default_factory=list)
    sessions: set[int] = field(default_factory=set)
    reject: dict[str, str] = field(default_factory=dict)  # address -> reply, e.g. "550 5.1.1 No such user"
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address in self.reject:
            return self.reject[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
            self.sessions.add(id(session))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_sink() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


@pytest.fixture
def email_settings(servers, smtp_sink) -> EmailSettings:
    _, port = smtp_sink
    base = make_settings().model_dump()
    base.update(
        broker_url=make_settings().broker_url,
        redis_url=make_settings().redis_url,
        api_keys=make_settings().api_keys,
        smtp_port=port,
        smtp_host="127.0.0.1",
    )
    return EmailSettings(**base)


@pytest.fixture
def email_worker(email_settings: EmailSettings, publisher: Publisher) -> Iterator[dramatiq.Worker]:
    with serving(SPEC, email_settings, threads=4, stop_timeout_ms=10_000) as worker:
        yield worker


def register_email_worker(publisher: Publisher, **settings: Any) -> None:
    """Register the email types as an email worker of these ``EmailSettings`` does at boot.

    Its cards carry the submission policy its settings give (``email_quota_per_hour``,
    ``email_allowed_domains``); ``publisher``'s catalogue reads them at once. The whole boot
    path, a worker process included, is tested in ``tests/worker/test_wire_entrance.py``.
    """
    worker_settings = EmailSettings(**{**make_settings().model_dump(), **settings})
    assert register(ContractStore(publisher.store), spec_cards(SPEC, served_contracts(SPEC, worker_settings)))
    catalogue = publisher.preparer.registry
    assert isinstance(catalogue, Catalogue)
    catalogue.refresh(force=True)
