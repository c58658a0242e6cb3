"""Pure logic of the core library: settings, URL policy, wire format, logging, backoff."""

from __future__ import annotations

import io
import json
import logging

import dramatiq
import pytest
from pydantic import ValidationError

from offload.contracts import BUILT_IN
from offload.contracts.system import SLEEP
from offload.errors import ConfigError, ValidationFailed
from offload.logs import JsonFormatter, job_logging
from offload.settings import ApiKey, load_settings, parse_api_keys
from offload.urls import UrlPolicy
from offload.wire import WireMessage, encode_message
from offload.worker.runtime import backoff, describe


def test_api_keys_parse_into_tenants_and_roles() -> None:
    keys = parse_api_keys("k" * 16 + "=acme:client, " + "r" * 16 + "=acme:reader," + "a" * 16 + "=ops:admin")
    assert keys == {
        "k" * 16: ApiKey("acme", "client"),
        "r" * 16: ApiKey("acme", "reader"),
        "a" * 16: ApiKey("ops", "admin"),
    }


@pytest.mark.parametrize("raw", ["nokey", "short=acme:client", "k" * 16 + "=acme:root", "k" * 16 + "=:client"])
def test_malformed_api_keys_are_a_config_error_that_never_shows_the_key(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_api_keys(raw)
    assert "k" * 16 not in str(caught.value) and "OFFLOAD_API_KEYS" in str(caught.value)


def test_settings_name_the_variable_and_never_print_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFLOAD_BROKER_URL", "amqp://app:s3cret@127.0.0.1:5672/x")
    monkeypatch.setenv("OFFLOAD_RETENTION_SUCCEEDED", "soon")
    with pytest.raises(ConfigError, match="OFFLOAD_RETENTION_SUCCEEDED"):
        load_settings()
    monkeypatch.setenv("OFFLOAD_RETENTION_SUCCEEDED", "120")
    settings = load_settings()
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())
    with pytest.raises(ValidationError, match="frozen"):
        settings.retention_succeeded = 1  # type: ignore[misc]


def test_production_refuses_the_guest_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFLOAD_ENV", "production")
    monkeypatch.setenv("OFFLOAD_API_KEYS", "k" * 16 + "=acme:client")
    with pytest.raises(ConfigError, match="guest"):
        load_settings()


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/",
        "http://[fd00:ec2::254]/",
        "http://127.0.0.1:15672/",
        "http://localhost:6379/",
        "http://[::1]/",
        "http://0.0.0.0/",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://017700000001/",
        "http://[::ffff:127.0.0.1]/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://198.18.0.1/",
        "http://[fc00::1]/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "file:///etc/passwd",
        "gopher://x/",
        "ftp://x/",
        "data:text/plain,x",
        "http://user:pass@93.184.215.14/",
        "https://93.184.215.14:25/",
        "https://93.184.215.14:5672/",
        "https://" + "a" * 2050 + ".com/",
        "http://",
        "https://[::1",
    ],
)
def test_the_ssrf_guard_refuses_private_loopback_odd_and_malformed_urls(url: str) -> None:
    policy = UrlPolicy(allow_http=True, resolver=lambda host, port: ["127.0.0.1"])
    with pytest.raises(ValidationFailed) as caught:
        policy.check(url)
    assert caught.value.code in {"url_not_allowed", "scheme_not_allowed"}


def test_the_ssrf_guard_checks_every_resolved_address() -> None:
    public = UrlPolicy(resolver=lambda host, port: ["93.184.215.14"])
    assert public.check("https://hooks.example.com/x") == "https://hooks.example.com/x"
    rebinding = UrlPolicy(resolver=lambda host, port: ["93.184.215.14", "10.1.2.3"])
    with pytest.raises(ValidationFailed):
        rebinding.check("https://hooks.example.com/x")
    with pytest.raises(ValidationFailed, match="does not resolve"):
        UrlPolicy(resolver=lambda host, port: (_ for _ in ()).throw(OSError("nx"))).check("https://nx.example/")
    assert UrlPolicy(allow_hosts=("127.0.0.1",), allow_http=True).check("http://127.0.0.1:9999/h")


def test_our_messages_are_what_dramatiq_would_encode() -> None:
    body = encode_message(
        job_id="6a2e3a38-3f1e-4a3c-9f0e-3b8f3c1d2e4f",
        job_type="system.sleep",
        queue="system",
        payload={"ms": 5},
        tenant="acme",
        broker_priority=2,
        timestamp_ms=1,
    )
    decoded = dramatiq.Message.decode(body)
    assert decoded.encode() == body
    assert decoded.actor_name == "system.sleep" and decoded.message_id == decoded.kwargs["job_id"]
    assert WireMessage.decode(body).queue == "system" and WireMessage.decode(body).priority == 2


def test_log_lines_are_json_with_the_job_id_and_tenant() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("offload.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with job_logging(job_id="j1", tenant="acme"):
            logger.info("working on %s", "it", extra={"step": 2})
        logger.info("outside")
    finally:
        logger.removeHandler(handler)
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["msg"] == "working on it" and inside["job_id"] == "j1" and inside["tenant"] == "acme"
    assert inside["step"] == 2 and "job_id" not in outside


def test_backoff_grows_and_is_capped() -> None:
    contract = BUILT_IN.get("system.fail")
    delays = [backoff(contract, attempt) for attempt in range(1, 12)]
    assert all(0 < d <= contract.retry.max_backoff for d in delays)
    assert max(delays[-3:]) > max(delays[:1])


def test_error_descriptions_mask_credentials() -> None:
    text = describe(ConnectionError("cannot reach amqp://app:s3cret@10.0.0.1:5672/x"))
    assert "s3cret" not in text and text.startswith("ConnectionError: ")


def test_sleep_payload_limits() -> None:
    with pytest.raises(ValidationFailed):
        SLEEP.parse({"ms": 600_001})


def test_workers_refuse_to_start_with_any_encoder_but_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from offload.broker import build_broker

    monkeypatch.setattr(dramatiq.message, "global_encoder", dramatiq.PickleEncoder())
    with pytest.raises(ConfigError, match="PickleEncoder"):
        build_broker("amqp://guest:guest@127.0.0.1:5672/%2F")


def test_broker_urls_get_bounded_timeouts_without_overriding_explicit_ones() -> None:
    from offload.broker import with_timeouts

    url = with_timeouts("amqp://u:p@h:5672/v?heartbeat=10")
    assert "heartbeat=10" in url and "blocked_connection_timeout=2" in url and "socket_timeout=2" in url
