"""Issue 29: what a security review from outside found, each finding replayed against the live API.

The review tried 471 attacks; these are the ones that did not hold, each as the reviewer sent it
(or as close as an in-process request gets), with the answer the fix gives. The bad-input shapes
are also fuzzed against the real server process in ``tests/fuzz/test_properties.py``.
"""

from __future__ import annotations

import re
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


# -- 7: /metrics labels come from known sets --------------------------------------------------------------


def test_7_any_http_method_sent_without_a_key_is_counted_under_other_not_as_a_label_of_its_own(
    servers: None, redis_client: Any, clean_broker: None
) -> None:
    settings = make_settings(metrics=True)
    publisher = Publisher.from_settings(settings)
    try:
        api = CheckedApi(create_app(settings, publisher=publisher).test_client())
        invented = [f"X{n}FUZZ" for n in range(20)] + ["PROPFIND", "get", "TRACE"]
        for method in invented:
            api.client.open("/v1/jobs", method=method)
            api.client.open("/nowhere", method=method)
        api.client.get("/v1/jobs")
        text = api.as_("admin").get("/metrics").get_data(as_text=True)
        methods = set(re.findall(r'offload_api_request[a-z_]*\{[^}]*method="([^"]*)"', text))
        assert methods and methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}, methods
        assert "other" in methods
    finally:
        publisher.close()
