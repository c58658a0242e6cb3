"""``offload check-message`` (issue 23): a wire message and its AMQP properties checked as a worker adopts
them, each difference named by its path in the message; and ``OFFLOAD_WIRE_PUBLISHERS`` refused
clearly when it is not the documented shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from offload.cli import main
from offload.errors import ConfigError
from offload.settings import load_settings
from tests.support import AMQP_URL, REDIS_URL

JOB_ID = "0b7f3a34-8d0e-4c4f-9d7a-3f2f1c9b6e01"


def _message(payload: Any = None, **offload: Any) -> dict[str, Any]:
    return {
        "queue_name": "system",
        "actor_name": "system.sleep",
        "args": [],
        "kwargs": {"job_id": JOB_ID, "payload": {"ms": 5} if payload is None else payload},
        "options": {"broker_priority": 2, "offload": {"v": 1, **offload}},
        "message_id": JOB_ID,
        "message_timestamp": 1767225600000,
    }


@pytest.mark.parametrize(
    ("message", "properties", "expected"),
    [
        (_message(tenant="beta", delay=5, idempotency_key="k-1", tags=["a"]), {"user_id": "orders"}, ["ok"]),
        (
            _message({"ms": "soon"}, delay=-1),
            {"user_id": "orders"},
            [
                "options.offload.delay: Input should be greater than or equal to 0 (validation_failed, "
                "greater_than_equal)",
                "kwargs.payload.ms: Input should be a valid integer (validation_failed, int_type)",
            ],
        ),
        (
            _message(tenant="globex"),
            {"user_id": "orders"},
            ["(tenant_not_allowed): This publisher may not act for tenant 'globex'."],
        ),
        (
            _message(colour="red"),
            {"priority": 7},
            [
                "priority: must be 1 (low), 2 (normal) or 3 (high), or left out",
                "user_id: missing: the message would be refused (unauthenticated_publisher); set it to your login",
                "options.offload.colour: is not an options.offload key (validation_failed, extra_forbidden)",
            ],
        ),
        (
            {**_message(), "actor_name": "image.resize"},
            None,
            ["queue_name: wrong_queue: 'image.resize' jobs go to queue 'media', not 'system'."],
        ),
        (
            {**{k: v for k, v in _message().items() if k != "actor_name"}, "args": {}},
            None,
            ["actor_name: missing", "args: must be a JSON list"],
        ),
    ],
)
def test_check_message_prints_ok_or_each_difference_by_its_path(
    message: dict[str, Any],
    properties: dict[str, Any] | None,
    expected: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    redis_client: redis.Redis,
) -> None:
    monkeypatch.setenv("OFFLOAD_REDIS_URL", REDIS_URL)
    monkeypatch.setenv("OFFLOAD_BROKER_URL", AMQP_URL)
    monkeypatch.setenv("OFFLOAD_WIRE_PUBLISHERS", json.dumps({"orders": {"tenants": ["acme", "beta"]}}))
    body = tmp_path / "message.json"
    body.write_text(json.dumps(message))
    argv = ["check-message", str(body)]
    if properties is not None:
        (tmp_path / "properties.json").write_text(json.dumps(properties))
        argv += ["--headers", str(tmp_path / "properties.json")]
    code = main(argv)
    printed = capsys.readouterr().out.splitlines()
    assert printed[: len(expected)] == expected and len(printed) == len(expected)
    assert code == (0 if expected == ["ok"] else 1)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("{not json", "OFFLOAD_WIRE_PUBLISHERS: Value error, not JSON"),
        ('{"orders": {"tenants": []}}', "user 'orders': 'tenants' must be a non-empty list"),
        ('{"orders": {"tenants": ["acme"], "job_types": ["email send"]}}', "job type 'email send' is not"),
        ('{"orders": {"tenants": ["acme"], "types": []}}', "unknown key(s) ['types']"),
        ('{"guest": {"tenants": ["acme"]}}', "maps ['guest'], which Offload trusts as its own"),
    ],
)
def test_a_malformed_publisher_mapping_is_a_config_error_naming_the_problem(raw: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(broker_url="amqp://guest:guest@127.0.0.1:5672/x", wire_publishers=raw)
    assert says in str(caught.value)
