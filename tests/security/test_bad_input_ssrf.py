"""reliability-security.md §7.7, rows 37-45: user-given URLs (webhooks, report and image sources) and SSRF.

Every URL is checked twice, as the section asks: at registration (the real API, with no host
exempt from the guard, as in production) and at connect time (the real outbound code the workers
use). Validate only: the automatic ``egress`` guard refuses any connection off loopback, host
names come from a test resolver (``dns``: ``socket.getaddrinfo`` answers from a table, numeric
forms as the C library reads them, nothing from the network), and the end-to-end rows run real
workers against receivers and listeners on 127.0.0.1 that count what reaches them.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import pytest
import requests

from offload.errors import PermanentJobError, ValidationFailed
from offload.outbound import fetch_source, new_session, pinned_request
from offload.publish import Publisher
from offload.publish.publisher import settings_url_policy
from offload.urls import UrlPolicy
from offload_api.app import create_app
from tests.helpers import wait_for
from tests.http_source import Source
from tests.support import RunningWorker, make_settings
from tests.support.security import CheckedApi, Egress
from tests.support.webhooks import Receiver
from tests.webhooks.test_delivery import _delivery_job

PUBLIC = "93.184.215.14"  # an address the test resolver hands out; nothing ever connects to it


@dataclass
class Dns:
    """The test resolver: names answer from ``answers`` (a list, or a function called per lookup)."""

    answers: dict[str, list[str] | Callable[[], list[str]]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Dns:
    state = Dns()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> Any:
        try:  # numeric forms (127.1, 0x7f000001, ...) as the C library reads them: no lookup
            return real(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except socket.gaierror:
            pass
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name in state.answers:
            state.lookups.append(name)
            answer = state.answers[name]
            addresses = answer() if callable(answer) else answer
            number = int(port or 0)
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (ip, number, 0, 0))
                if ":" in ip
                else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, number))
                for ip in addresses
            ]
        if name == "localhost":
            return real(host, port, family, type, proto, flags)  # /etc/hosts
        raise socket.gaierror(socket.EAI_NONAME, f"{name!r} is not in the test resolver")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    state.answers.update(
        {
            "internal.offload.test": ["127.0.0.1"],
            "\u0430pple.com": [PUBLIC],
            "xn--pple-43d.com": [PUBLIC],
            "hooks.offload.test": [PUBLIC],
        }
    )
    return state


ADDRESS, PORT, SCHEME = "private, loopback or reserved", "port", "scheme"
#: Each refused URL: (URL, error code, what the refusal names).
REFUSED = {
    "row37-metadata-v4": ("http://169.254.169.254/latest/meta-data/", "url_not_allowed", ADDRESS),
    "row37-metadata-v6": ("http://[fd00:ec2::254]/", "url_not_allowed", ADDRESS),
    "row38-rabbitmq-ui": ("http://127.0.0.1:15672/", "url_not_allowed", PORT),
    "row38-loopback": ("http://127.0.0.1/", "url_not_allowed", ADDRESS),
    "row38-localhost-redis": ("http://localhost:6379/", "url_not_allowed", PORT),
    "row38-localhost": ("http://localhost/", "url_not_allowed", ADDRESS),
    "row38-v6-loopback": ("http://[::1]/", "url_not_allowed", ADDRESS),
    "row38-zero": ("http://0.0.0.0/", "url_not_allowed", ADDRESS),
    "row38-short-loopback": ("http://127.1/", "url_not_allowed", ADDRESS),
    "row39-decimal": ("http://2130706433/", "url_not_allowed", ADDRESS),
    "row39-hex": ("http://0x7f000001/", "url_not_allowed", ADDRESS),
    "row39-octal": ("http://017700000001/", "url_not_allowed", ADDRESS),
    "row39-v4-mapped-v6": ("http://[::ffff:127.0.0.1]/", "url_not_allowed", ADDRESS),
    "row40-10": ("http://10.0.0.1/", "url_not_allowed", ADDRESS),
    "row40-172-16": ("http://172.16.0.1/", "url_not_allowed", ADDRESS),
    "row40-192-168": ("http://192.168.1.1/", "url_not_allowed", ADDRESS),
    "row40-shared-100-64": ("http://100.64.0.1/", "url_not_allowed", ADDRESS),
    "row40-benchmark-198-18": ("http://198.18.0.1/", "url_not_allowed", ADDRESS),
    "row40-ula-fc00": ("http://[fc00::1]/", "url_not_allowed", ADDRESS),
    "row40-multicast-v4": ("http://224.0.0.1/", "url_not_allowed", ADDRESS),
    "row40-multicast-v6": ("http://[ff02::1]/", "url_not_allowed", ADDRESS),
    "row40-broadcast": ("http://255.255.255.255/", "url_not_allowed", ADDRESS),
    "row41-file": ("file:///etc/passwd", "scheme_not_allowed", SCHEME),
    "row41-gopher": ("gopher://hooks.offload.test:70/_HELO", "scheme_not_allowed", SCHEME),
    "row41-dict": ("dict://hooks.offload.test:11211/stats", "scheme_not_allowed", SCHEME),
    "row41-ftp": ("ftp://hooks.offload.test/", "scheme_not_allowed", SCHEME),
    "row41-jar": ("jar:http://hooks.offload.test!/", "scheme_not_allowed", SCHEME),
    "row41-data": ("data:text/plain,hello", "scheme_not_allowed", SCHEME),
    "row42-name-for-loopback": ("http://internal.offload.test/", "url_not_allowed", ADDRESS),
    "row45-userinfo": (f"http://user:pass@{PUBLIC}/", "url_not_allowed", "user info"),
    "row45-port-25": (f"http://{PUBLIC}:25/", "url_not_allowed", PORT),
    "row45-port-5672": (f"http://{PUBLIC}:5672/", "url_not_allowed", PORT),
    "row45-port-6379": (f"http://{PUBLIC}:6379/", "url_not_allowed", PORT),
    "row45-idn-homograph": ("https://\u0430pple.com/", "url_not_allowed", "internationalised"),
    "row45-idn-homograph-punycode": ("https://xn--pple-43d.com/", "url_not_allowed", "internationalised"),
}
#: Longer than any URL field takes: refused by the field's length (validation_failed) or the guard.
LONG_URL = "https://hooks.offload.test/" + "a" * 5000


def _submissions(url: str) -> list[tuple[str, dict[str, Any], dict[str, Any], str]]:
    """The three places a client gives a URL: (job type, payload, options, field path)."""
    return [
        ("system.noop", {}, {"callback_url": url}, "options.callback_url"),
        ("report.build", {"title": "T", "columns": [{"name": "a"}], "source": {"url": url}}, {}, "payload.source.url"),
        ("image.thumbnail", {"source": {"url": url}}, {}, "payload.source.url"),
    ]


@pytest.fixture
def strict_api(redis_client: Any, clean_broker: None, dns: Dns) -> Iterator[CheckedApi]:
    """The API as in production: no host is exempt from the guard (tests usually exempt 127.0.0.1)."""
    settings = make_settings(url_allow_hosts=[])
    publisher = Publisher.from_settings(settings)
    yield CheckedApi(create_app(settings, publisher=publisher).test_client())
    publisher.close()


@pytest.mark.parametrize(("url", "code", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_rows_37_to_45_refused_at_registration_with_422(
    strict_api: CheckedApi, egress: Egress, url: str, code: str, reason: str
) -> None:
    for job_type, payload, options, field_path in _submissions(url):
        response = strict_api.submit(job_type, payload, **options)
        body = response.get_json()
        assert (response.status_code, body.get("error")) == (422, code), (field_path, body)
        assert body["errors"][0]["field"] == field_path and reason in body["errors"][0]["problem"], body
    assert strict_api.get("/v1/jobs").get_json()["jobs"] == []  # nothing was recorded
    assert egress.refused == []  # and nothing tried to reach an address off loopback


def test_row45_a_5000_character_url_is_refused_at_registration(strict_api: CheckedApi) -> None:
    for job_type, payload, options, field_path in _submissions(LONG_URL):
        response = strict_api.submit(job_type, payload, **options)
        body = response.get_json()
        assert response.status_code == 422 and body["error"] in ("url_not_allowed", "validation_failed"), body
        assert body["errors"][0]["field"] == field_path and "2048" in body["errors"][0]["problem"], body


@pytest.fixture
def connect_policy() -> UrlPolicy:
    """What the workers vet with when connecting (test settings: plain http allowed, no host exempt)."""
    return settings_url_policy(make_settings(url_allow_hosts=[]))


@pytest.mark.parametrize(
    ("url", "code", "reason"),
    [*REFUSED.values(), (LONG_URL, "url_not_allowed", "2048")],
    ids=[*REFUSED.keys(), "row45-5000-characters"],
)
def test_rows_37_to_45_refused_again_at_connect_time_without_connecting(
    dns: Dns, egress: Egress, connect_policy: UrlPolicy, url: str, code: str, reason: str
) -> None:
    with pytest.raises(ValidationFailed) as webhook:  # the webhook sender
        pinned_request("POST", url, policy=connect_policy, data=b"{}", timeout=1)
    with pytest.raises(PermanentJobError) as source:  # report and image sources
        fetch_source(url, policy=connect_policy, read_timeout=1)
    assert webhook.value.code == source.value.code == code
    assert reason in webhook.value.errors[0]["problem"]
    assert egress.attempts == []


def test_row41_only_https_in_production_and_requests_has_no_adapter_for_other_schemes(dns: Dns) -> None:
    production = settings_url_policy(make_settings(env="production", url_allow_hosts=[]))
    with pytest.raises(ValidationFailed) as plain:
        production.check("http://hooks.offload.test/")
    assert plain.value.code == "scheme_not_allowed"
    assert production.check("https://hooks.offload.test/") == "https://hooks.offload.test/"
    for key in ("row41-file", "row41-gopher", "row41-dict", "row41-ftp", "row41-jar", "row41-data"):
        with pytest.raises(requests.exceptions.InvalidSchema):  # the row's note, verified (no request is made)
            new_session().get(REFUSED[key][0], timeout=1)


@dataclass
class Listener:
    """A TCP port on loopback that only counts the connections made to it (never accepted)."""

    sock: socket.socket

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def connections(self) -> int:
        count = 0
        self.sock.setblocking(False)
        while True:
            try:
                self.sock.accept()[0].close()
            except BlockingIOError:
                return count
            count += 1


def _listen(host: str, port: int = 0) -> Listener:
    sock = socket.socket()
    sock.bind((host, port))
    sock.listen(16)
    return Listener(sock)


def test_row42_a_name_for_loopback_is_refused_at_connect_and_fetches_go_to_the_vetted_address(
    dns: Dns, egress: Egress, connect_policy: UrlPolicy, receiver: Receiver
) -> None:
    # Refused at connect: the name resolves to loopback (its port allowed, so the address decides).
    policy = dataclasses.replace(connect_policy, allowed_ports=(receiver.port,))
    with pytest.raises(ValidationFailed) as refused:
        pinned_request("POST", f"http://internal.offload.test:{receiver.port}/", policy=policy, timeout=2)
    assert refused.value.code == "url_not_allowed" and receiver.received == [] and egress.attempts == []
    # Allowed (a name exempted, as tests exempt 127.0.0.1): one lookup, and the request goes to the
    # address it gave even though the name resolves elsewhere by the time of connecting.
    decoy = _listen("127.0.0.2", receiver.port)
    answers = iter([["127.0.0.1"], ["127.0.0.2"]])
    dns.answers["pinned.offload.test"] = lambda: next(answers)
    exempt = dataclasses.replace(connect_policy, allow_hosts=("pinned.offload.test",))
    response = pinned_request("POST", f"http://pinned.offload.test:{receiver.port}/hook", policy=exempt, timeout=5)
    assert response.status_code == 200 and dns.lookups.count("pinned.offload.test") == 1
    assert [h["host"] for h, _ in receiver.received] == [f"pinned.offload.test:{receiver.port}"]
    assert decoy.connections() == 0 and egress.to("127.0.0.2") == []
    decoy.sock.close()


@pytest.fixture
def rebinding(dns: Dns) -> None:
    """``rebind.offload.test`` answers a public address to its first lookup (the API's), loopback after.

    The flip is the resolver's own, on the lookup count: flipped by the test after the 202, a
    worker quick enough to look the name up first saw the public address (and, refused by the
    egress guard, retried), which is not the attack this row is about.
    """
    answers = iter([[PUBLIC]])
    dns.answers["rebind.offload.test"] = lambda: next(answers, ["127.0.0.1"])


@pytest.mark.usefixtures("rebinding")
def test_row43_a_webhook_host_rebound_to_loopback_after_registration_is_not_called(
    api: CheckedApi,
    publisher: Publisher,
    worker: RunningWorker,
    email_worker: dramatiq.Worker,
    dns: Dns,
    egress: Egress,
) -> None:
    response = api.submit("system.noop", callback_url="http://rebind.offload.test/hooks")
    assert response.status_code == 202, response.get_json()  # first lookup: a public address
    job_id = response.get_json()["id"]
    wait_for(lambda: _delivery_job(publisher, job_id) is not None, timeout=20)
    delivery = _delivery_job(publisher, job_id)
    record = publisher.wait(delivery.id, timeout=20)
    assert record is not None and (record.state, record.error_code, record.attempts) == ("failed", "url_not_allowed", 1)
    assert dns.lookups.count("rebind.offload.test") == 2  # registration, then connect: each vetted
    assert egress.to("127.0.0.1", 80) == [] and egress.to(PUBLIC) == []  # 0 connections


@pytest.mark.usefixtures("rebinding")
def test_row43_a_report_source_rebound_to_loopback_after_registration_is_not_fetched(
    api: CheckedApi,
    publisher: Publisher,
    reports_worker: dramatiq.Worker,
    dns: Dns,
    egress: Egress,
) -> None:
    payload = {"title": "T", "columns": [{"name": "a"}], "source": {"url": "http://rebind.offload.test/rows"}}
    response = api.submit("report.build", payload)
    assert response.status_code == 202, response.get_json()
    record = publisher.wait(response.get_json()["id"], timeout=20)
    assert record is not None and (record.state, record.error_code, record.attempts) == ("failed", "url_not_allowed", 1)
    assert dns.lookups.count("rebind.offload.test") == 2
    assert egress.to("127.0.0.1", 80) == [] and egress.to(PUBLIC) == []


@pytest.mark.parametrize(
    "target", ["redis", "listener"], ids=["row44-webhook-302-to-redis", "row44-webhook-302-to-listener"]
)
def test_row44_a_webhook_redirect_is_not_followed_and_fails_the_delivery(
    api: CheckedApi,
    publisher: Publisher,
    worker: RunningWorker,
    email_worker: dramatiq.Worker,
    receiver: Receiver,
    target: str,
) -> None:
    decoy = _listen("127.0.0.1")
    location = "http://127.0.0.1:6379/" if target == "redis" else f"http://127.0.0.1:{decoy.port}/"
    receiver.answers = [(302, {"Location": location})]
    job_id = api.submit("system.noop", callback_url=receiver.url).get_json()["id"]
    wait_for(lambda: _delivery_job(publisher, job_id) is not None, timeout=20)
    record = publisher.wait(_delivery_job(publisher, job_id).id, timeout=20)
    assert record is not None and (record.state, record.error_code, record.attempts) == (
        "failed",
        "webhook_redirect",
        1,
    )
    assert len(receiver.received) == 1 and decoy.connections() == 0
    decoy.sock.close()


def test_row44_a_report_source_redirect_is_not_followed_and_fails_the_report(
    api: CheckedApi, publisher: Publisher, reports_worker: dramatiq.Worker, source: Source
) -> None:
    decoy = _listen("127.0.0.1")
    source.status, source.headers = 302, {"Location": f"http://127.0.0.1:{decoy.port}/rows"}
    payload = {"title": "T", "columns": [{"name": "a"}], "source": {"url": source.url("/rows")}}
    record = publisher.wait(api.submit("report.build", payload).get_json()["id"], timeout=20)
    assert record is not None and (record.state, record.error_code, record.attempts) == ("failed", "source_refused", 1)
    assert source.requests == 1 and decoy.connections() == 0
    decoy.sock.close()
