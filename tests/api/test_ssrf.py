"""Every callback URL of reliability-security.md §7.7 (rows 37-45) is refused at submission with 422."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from offload.publish import Publisher
from offload_api.app import create_app
from tests.support import Api, make_settings


@pytest.fixture
def strict_api(redis_client, clean_broker) -> Iterator[Api]:
    """The API as in production: no host is exempt from the SSRF guard (tests usually exempt 127.0.0.1)."""
    settings = make_settings(url_allow_hosts=[])
    publisher = Publisher.from_settings(settings)
    yield Api(create_app(settings, publisher=publisher).test_client())
    publisher.close()


ROWS = {
    "37 metadata v4": "http://169.254.169.254/latest/meta-data/",
    "37 metadata v6": "http://[fd00:ec2::254]/",
    "38 rabbitmq ui": "http://127.0.0.1:15672/",
    "38 localhost redis": "http://localhost:6379/",
    "38 v6 loopback": "http://[::1]/",
    "38 zero": "http://0.0.0.0/",
    "38 short loopback": "http://127.1/",
    "39 decimal": "http://2130706433/",
    "39 hex": "http://0x7f000001/",
    "39 octal": "http://017700000001/",
    "39 mapped": "http://[::ffff:127.0.0.1]/",
    "40 ten": "http://10.0.0.1/",
    "40 172": "http://172.16.0.1/",
    "40 192": "http://192.168.1.1/",
    "40 shared": "http://100.64.0.1/",
    "40 benchmark": "http://198.18.0.1/",
    "40 ula": "http://[fc00::1]/",
    "40 multicast": "http://224.0.0.1/",
    "40 broadcast": "http://255.255.255.255/",
    "41 file": "file:///etc/passwd",
    "41 gopher": "gopher://example.com/",
    "41 dict": "dict://example.com:11211/",
    "41 ftp": "ftp://example.com/",
    "41 jar": "jar:http://example.com!/",
    "41 data": "data:text/plain,hello",
    "42 name for loopback": "http://localhost/",
    "45 userinfo": "http://user:pass@93.184.215.14/",
    "45 smtp port": "http://93.184.215.14:25/",
    "45 amqp port": "http://93.184.215.14:5672/",
    "45 redis port": "http://93.184.215.14:6379/",
    "45 long": "https://example.com/" + "a" * 5000,
    "45 homograph": "https://\u0430pple.com/",
}


@pytest.mark.parametrize("url", ROWS.values(), ids=ROWS.keys())
def test_a_callback_url_that_is_not_a_public_web_address_is_refused_at_submission(strict_api: Api, url: str) -> None:
    api = strict_api
    response = api.submit("system.noop", callback_url=url)
    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert body["error"] in {"url_not_allowed", "scheme_not_allowed", "validation_failed"}
    assert body["errors"][0]["field"] == "options.callback_url"
    assert api.get("/v1/jobs").get_json()["jobs"] == []  # nothing was recorded
