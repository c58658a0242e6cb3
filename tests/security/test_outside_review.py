"""Issue 29: what a security review from outside found, each finding replayed against the live API.

The review tried 471 attacks; these are the ones that did not hold, each as the reviewer sent it
(or as close as an in-process request gets), with the answer the fix gives. The bad-input shapes
are also fuzzed against the real server process in ``tests/fuzz/test_properties.py``.
"""

from __future__ import annotations

from typing import Any

from offload.publish import Publisher
from offload_api.app import create_app
from tests.conftest import make_settings
from tests.security.conftest import CheckedApi

# -- 6: absolute URLs come from OFFLOAD_PUBLIC_URL, never the Host header ----------------------------------


def test_6_a_batchs_location_and_status_url_come_from_the_public_url_not_the_host_header(
    servers: None, redis_client: Any, clean_broker: None
) -> None:
    settings = make_settings(public_url="https://offload.example")
    publisher = Publisher.from_settings(settings)
    try:
        api = CheckedApi(create_app(settings, publisher=publisher).test_client())
        evil = {"Host": "evil.example"}
        batch = api.post("/v1/batches", json={"jobs": [{"type": "system.noop"}]}, headers=evil)
        body = batch.get_json()
        assert batch.status_code == 202, body
        assert batch.headers["Location"] == body["status_url"] == f"https://offload.example/v1/batches/{body['id']}"
        assert body["jobs"][0]["status_url"].startswith("https://offload.example/v1/jobs/")
        single = api.post("/v1/jobs", json={"type": "system.noop"}, headers=evil)
        assert single.headers["Location"].startswith("https://offload.example/v1/jobs/")
        assert "evil.example" not in batch.get_data(as_text=True) + single.get_data(as_text=True)
    finally:
        publisher.close()
