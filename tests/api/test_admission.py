"""Load shedding (issue 9, F14): the admission middleware's gates, alone and in the real app."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import pytest

from offload.errors import ConfigError
from offload.publish import Publisher
from offload.settings import ApiKey, load_settings
from offload_api.admission import Admission, TokenBuckets
from offload_api.app import create_app
from offload_api.auth import hash_keys
from tests.support import KEYS, make_settings

KEYMAP = hash_keys({KEYS["acme"]: ApiKey("acme", "client"), KEYS["globex"]: ApiKey("globex", "client")})


class Blocking:
    """A WSGI app whose requests wait until released, so that a test can hold them in flight."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.entered.release()
        if environ.get("PATH_INFO") == "/hold":
            self.release.wait(10)
        start_response("202 ACCEPTED", [("Content-Type", "text/plain")])
        return [b"ok"]


def call(
    app: Admission, path: str = "/v1/jobs", *, who: str | None = None, **environ: str
) -> tuple[str, dict[str, str]]:
    """One request through the middleware: its status line and headers."""
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    env: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "POST", **environ}
    if who is not None:
        env["HTTP_AUTHORIZATION"] = f"Bearer {KEYS[who]}"
    b"".join(app(env, start_response))  # type: ignore[arg-type]
    return seen["status"], seen["headers"]


def hold(app: Admission, inner: Blocking, count: int, **environ: str) -> list[threading.Thread]:
    """Start ``count`` requests to ``/hold`` and wait until each is inside the app."""
    threads = [threading.Thread(target=call, args=(app, "/hold"), kwargs=environ) for _ in range(count)]
    for thread in threads:
        thread.start()
        assert inner.entered.acquire(timeout=5)
    return threads


def middleware(inner: Blocking, **overrides: Any) -> Admission:
    options: dict[str, Any] = {
        "max_inflight": 2,
        "max_inflight_body_bytes": 1 << 20,
        "max_body_bytes": 1024,
        "keys": KEYMAP,
    }
    options.update(overrides)
    return Admission(inner, **options)


def test_token_bucket_spends_its_burst_then_refills_at_its_rate_per_tenant() -> None:
    now = [100.0]
    buckets = TokenBuckets(2.0, 3.0, clock=lambda: now[0])
    assert [buckets.take("acme") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("acme") == pytest.approx(0.5)  # half a second until the next token
    assert buckets.take("globex") == 0.0  # another tenant's bucket is full
    now[0] += 0.5
    assert buckets.take("acme") == 0.0
    now[0] += 100
    assert [buckets.take("acme") for _ in range(4)][-1] > 0  # never more than the burst saved up


def test_requests_past_the_inflight_limit_get_503_overloaded_at_once_and_capacity_comes_back() -> None:
    inner = Blocking()
    shed: list[str] = []
    app = middleware(inner, on_shed=shed.append)
    threads = hold(app, inner, 2)
    try:
        status, headers = call(app)
        assert status.startswith("503") and headers["Retry-After"] == "1"
        assert shed == ["inflight"]
        assert call(app, "/healthz")[0].startswith("202")  # probes and metrics are never refused
        assert call(app, "/metrics")[0].startswith("202")
    finally:
        inner.release.set()
        for thread in threads:
            thread.join(5)
    assert app.inflight == 0 and app.body_bytes == 0
    assert call(app)[0].startswith("202")


def test_at_the_limit_a_tenant_under_its_fair_share_still_gets_in_up_to_twice_the_limit() -> None:
    inner = Blocking()
    app = middleware(inner, max_inflight=4)
    threads = hold(app, inner, 4, who="acme")  # one tenant holds every slot
    try:
        assert call(app, who="acme")[0].startswith("503")  # over its share (4 of 4)
        threads += hold(app, inner, 2, who="globex")  # the other's share is 4 / 2 tenants = 2
        assert app.by_tenant == {"acme": 4, "globex": 2}
        assert call(app, who="globex")[0].startswith("503")  # at its share now
        assert call(app, who="acme")[0].startswith("503")
        assert call(app)[0].startswith("202")  # a third (keyless) caller: 6 < 8 and 0 < 4 / 3
        assert inner.entered.acquire(timeout=5)  # (it went through the app)
        threads += hold(app, inner, 1)
        threads += hold(app, inner, 1)  # share 4 / 3 = 1.33: a second one still fits, 8 in all
        assert app.inflight == 8
        assert call(app)[0].startswith("503")  # at its share, and at twice the limit
    finally:
        inner.release.set()
        for thread in threads:
            thread.join(5)
    assert app.inflight == 0 and app.by_tenant == {}


def test_declared_body_bytes_in_flight_are_bounded_and_chunked_bodies_count_as_the_largest() -> None:
    inner = Blocking()
    shed: list[str] = []
    app = middleware(inner, max_inflight=10, max_inflight_body_bytes=2048, on_shed=shed.append)
    threads = hold(app, inner, 1, CONTENT_LENGTH="1024")
    try:
        assert call(app, CONTENT_LENGTH="5000")[0].startswith("202")  # over the body limit: the app's 413, unread
        assert call(app, HTTP_TRANSFER_ENCODING="chunked")[0].startswith("202")  # 1024 + 1024 fits
        threads += hold(app, inner, 1, CONTENT_LENGTH="1000")
        status, headers = call(app, CONTENT_LENGTH="100")
        assert status.startswith("503") and headers["Retry-After"] == "1"
        assert shed == ["body_bytes"]
        assert call(app)[0].startswith("202")  # no body costs nothing
    finally:
        inner.release.set()
        for thread in threads:
            thread.join(5)
    assert app.body_bytes == 0


def test_a_tenant_over_its_rate_gets_429_with_retry_after_while_others_and_bad_keys_pass() -> None:
    inner = Blocking()
    app = middleware(inner, max_inflight=100, tenant_rate=0.5, tenant_burst=2)
    assert [call(app, who="acme")[0][:3] for _ in range(3)] == ["202", "202", "429"]
    status, headers = call(app, who="acme")
    assert status.startswith("429") and headers["Retry-After"] == "2"  # 2 s until the next token
    assert call(app, who="globex")[0].startswith("202")
    for _ in range(5):  # no key or a bad one goes to the app, which answers 401 and counts it
        assert call(app)[0].startswith("202")
        assert call(app, HTTP_AUTHORIZATION="Bearer not-a-key")[0].startswith("202")


def test_settings_refuse_a_body_budget_smaller_than_one_body() -> None:
    with pytest.raises(ConfigError, match="OFFLOAD_MAX_INFLIGHT_BODY_BYTES"):
        load_settings(max_body_bytes=2_000_000, max_inflight_body_bytes=1_000_000)


def test_the_real_app_answers_429_rate_limited_as_json_to_one_tenant_only(publisher: Publisher) -> None:
    app = create_app(make_settings(tenant_rate_limit=0.2, tenant_rate_burst=2), publisher=publisher)
    client = app.test_client()

    def submit(who: str) -> Any:
        return client.post(
            "/v1/jobs", json={"type": "system.noop", "payload": {}}, headers={"Authorization": f"Bearer {KEYS[who]}"}
        )

    assert [submit("acme").status_code for _ in range(2)] == [202, 202]
    refused = submit("acme")
    assert refused.status_code == 429
    assert refused.get_json()["error"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) == refused.get_json()["retry_after"] == 5
    assert submit("globex").status_code == 202


def test_the_inflight_limit_drops_by_a_quarter_after_slow_requests_and_grows_back_after_fast_ones() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/slow":
            time.sleep(0.03)
        start_response("202 ACCEPTED", [])
        return [b""]

    gate = Admission(
        app, max_inflight=8, max_inflight_body_bytes=1 << 20, max_body_bytes=1024, keys={}, target_latency=0.02
    )
    together = [threading.Thread(target=call, args=(gate, "/slow")) for _ in range(3)]
    for thread in together:
        thread.start()
    for thread in together:
        thread.join(5)
    assert gate.limit == 6.0  # three slow requests ending together: one cut
    call(gate, "/slow")
    assert gate.limit == 4.5  # a later one: another
    for _ in range(3):
        call(gate, "/slow")
    assert gate.limit == 4.0  # the floor
    for _ in range(200):
        call(gate, "/fast")
    assert gate.limit == 8.0  # back to the ceiling, never past it
