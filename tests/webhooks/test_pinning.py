"""Outbound requests go to the address the SSRF guard vetted, never to a name resolved again."""

from __future__ import annotations

from pathlib import Path

import pytest

from offload.errors import ValidationFailed
from offload.outbound import new_session, pinned_request
from offload.urls import UrlPolicy
from tests.support.webhooks import Receiver


def test_a_target_is_pinned_to_the_vetted_address_with_the_original_host() -> None:
    policy = UrlPolicy(resolver=lambda host, port: ["93.184.215.14"])
    target = policy.target("https://hooks.example.com/cb?x=1")
    assert target.url == "https://93.184.215.14:443/cb?x=1" and target.host == "hooks.example.com"
    assert target.host_header == "hooks.example.com" and target.address == "93.184.215.14"
    v6 = UrlPolicy(resolver=lambda host, port: ["2606:2800:220:1::1"]).target("https://hooks.example.com:8443/")
    assert v6.url == "https://[2606:2800:220:1::1]:8443/" and v6.host_header == "hooks.example.com:8443"


def test_dns_rebinding_cannot_redirect_a_vetted_request() -> None:
    # Given a resolver that answers a public address first and loopback afterwards,
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])
    calls = []

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    # when the URL is vetted and pinned, then it is resolved once and the vetted address is kept.
    target = UrlPolicy(resolver=rebinding).target("https://rebind.example.com/")
    assert target.address == "93.184.215.14" and calls == ["rebind.example.com"]


def test_a_host_that_now_resolves_to_loopback_is_refused_at_connect_time() -> None:
    policy = UrlPolicy(allow_http=True, resolver=lambda host, port: ["127.0.0.1"])
    with pytest.raises(ValidationFailed) as caught:
        pinned_request("POST", "http://hooks.example.com/", policy=policy, timeout=1)
    assert caught.value.code == "url_not_allowed"


def test_a_pinned_request_reaches_the_vetted_address_with_the_original_host_header(receiver: Receiver) -> None:
    policy = UrlPolicy(allow_http=True, allow_hosts=("localhost",), resolver=lambda host, port: ["127.0.0.1"])
    response = pinned_request("POST", f"http://localhost:{receiver.port}/hook", policy=policy, data=b"{}", timeout=5)
    assert response.status_code == 200
    headers, body = receiver.received[0]
    assert headers["host"] == f"localhost:{receiver.port}" and body == b"{}"


def test_redirects_are_never_followed(receiver: Receiver) -> None:
    receiver.answers = [(302, {"Location": "http://127.0.0.1:6379/"})]
    policy = UrlPolicy(allow_http=True, allow_hosts=("127.0.0.1",))
    response = pinned_request("POST", f"{receiver.url}", policy=policy, data=b"{}", timeout=5)
    assert response.status_code == 302 and len(receiver.received) == 1


def test_proxy_variables_and_netrc_never_touch_a_vetted_request(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A proxy would undo the pinning, and netrc credentials must never go to a user's host.
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login operator password hunter2-secret\n")
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9/")  # the discard port: nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    policy = UrlPolicy(allow_http=True, allow_hosts=("127.0.0.1",))
    response = pinned_request("POST", receiver.url, policy=policy, session=new_session(), data=b"{}", timeout=5)
    assert response.status_code == 200
    headers, _ = receiver.received[0]
    assert "authorization" not in headers
