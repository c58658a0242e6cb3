"""reliability-security.md §7.9, rows 50-53: signed download links.

Files are uploaded through the real API into the real storage folder; links are checked by the
API in-process (Flask test client) and, for the path rows, by the real server (``offload-api``
under gunicorn on 127.0.0.1), since only a real server shows the path as the client sent it.
"""

from __future__ import annotations

import hmac
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from offload.publish import Publisher
from offload.signing import LinkSigner
from offload_api.app import create_app
from tests.api.test_files import JPEG
from tests.support import AMQP_URL, KEYS, REDIS_URL, TEST_STORAGE, make_settings
from tests.support.security import LEAKS, CheckedApi
from tests.system.stack import Api as ApiServer
from tests.system.stack import stack_env


def _upload(api: CheckedApi) -> str:
    response = api.post("/v1/uploads", data=JPEG, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, response.get_json()
    return f"acme/{response.get_json()['id']}/source"


def _signer(app: Flask) -> LinkSigner:
    signer = app.extensions["offload"].signer
    assert isinstance(signer, LinkSigner)
    return signer


def _link(key: str, expires: int, sig: str) -> str:
    return f"/v1/files/{key}?expires={expires}&sig={sig}"


def test_row50_an_expired_link_is_410(api: CheckedApi, app: Flask) -> None:
    key = _upload(api)
    expires, sig = _signer(app).sign(key, ttl=60, now=0)  # valid for a minute, in 1970
    response = api.anonymous_get(_link(key, expires, sig))
    assert (response.status_code, response.get_json()["error"]) == (410, "link_expired")


def _tampered(signer: LinkSigner, key: str, other_key: str) -> dict[str, str]:
    expires, sig = signer.sign(key)
    # The first character: the last one of a base64 signature carries padding bits, so changing
    # it can decode to the same bytes (a valid link, which made this test flaky).
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    old_key = LinkSigner("the-signing-key-before-rotation-0123456789")
    return {
        "row51-tampered-signature": _link(key, expires, flipped),
        "row51-swapped-job": _link(other_key, expires, sig),
        "row51-swapped-tenant": _link(key.replace("acme/", "globex/", 1), expires, sig),
        "row51-changed-expiry": _link(key, expires + 3600, sig),
        "row51-no-signature": f"/v1/files/{key}?expires={expires}",
        "row51-old-signing-key": _link(key, *old_key.sign(key)),
    }


@pytest.mark.parametrize(
    "case",
    [
        "row51-tampered-signature",
        "row51-swapped-job",
        "row51-swapped-tenant",
        "row51-changed-expiry",
        "row51-no-signature",
        "row51-old-signing-key",
    ],
)
def test_row51_a_tampered_link_is_403_compared_in_constant_time(
    api: CheckedApi, app: Flask, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    key, other_key = _upload(api), _upload(api)
    link = _tampered(_signer(app), key, other_key)[case]
    compared: list[bytes] = []
    real = hmac.compare_digest

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", compare_digest)  # what itsdangerous compares with
    response = api.anonymous_get(link)
    assert (response.status_code, response.get_json()["error"]) == (403, "invalid_signature")
    assert compared or case == "row51-no-signature"  # an absent signature has nothing to compare


def test_row52_a_valid_link_to_a_deleted_file_or_another_tenants_file_is_404(
    api: CheckedApi, app: Flask, publisher: Publisher
) -> None:
    signer = _signer(app)
    gone, kept = _upload(api), _upload(api)
    app.extensions["offload"].storage.delete_prefix("acme", gone.split("/")[1])
    assert api.anonymous_get(signer.path(gone)).status_code == 404  # the file (its job) was deleted
    assert api.anonymous_get(signer.path(kept)).status_code == 200
    assert api.as_("globex").get(signer.path(kept)).status_code == 404  # another tenant's key
    # After key rotation the acme key belongs to globex: the valid link no longer serves it.
    rotated = make_settings(api_keys=f"{KEYS['acme']}=globex:client")
    other = CheckedApi(create_app(rotated, publisher=publisher).test_client())
    response = other.get(signer.path(kept))
    assert (response.status_code, response.get_json()["error"]) == (404, "not_found")


@pytest.fixture
def server(redis_client: Any, clean_broker: None, tmp_path: Path) -> Iterator[ApiServer]:
    """``offload-api`` on a free loopback port, sharing the tests' storage folder and signing key."""
    env = stack_env(AMQP_URL, REDIS_URL, OFFLOAD_STORAGE_DIR=str(TEST_STORAGE))
    process = ApiServer(env, tmp_path)
    yield process
    process.stop()


def _raw_get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)  # the path exactly as written
        connection.endheaders()
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
    finally:
        connection.close()
    assert not [leak for leak in LEAKS if leak in text], text[:300]
    return response.status, json.loads(text) if text.startswith("{") else {}


def test_row53_dot_dot_and_encoded_separators_in_the_download_path_are_400(
    api: CheckedApi, app: Flask, server: ApiServer
) -> None:
    key = _upload(api)
    tenant, upload_id, name = key.split("/")
    expires, sig = _signer(app).sign(key)  # a genuine signature: the path alone is refused
    query = f"?expires={expires}&sig={sig}"
    assert _raw_get(server.port, f"/v1/files/{key}{query}")[0] == 200  # the genuine path is served
    paths = {
        "row53-dot-dot": f"/v1/files/{tenant}/../{upload_id}/{name}",
        "row53-dot-dot-in-place": f"/v1/files/{tenant}/{upload_id}/../{upload_id}/{name}",
        "row53-encoded-slash": f"/v1/files/{tenant}/{upload_id}%2F{name}",
        "row53-encoded-slash-lower": f"/v1/files/{tenant}%2f{upload_id}/{name}",
        "row53-encoded-dot-dot": f"/v1/files/{tenant}/%2e%2e/{upload_id}/{name}",
        "row53-encoded-backslash": f"/v1/files/{tenant}/{upload_id}%5C{name}",
        "row53-encoded-nul": f"/v1/files/{tenant}/{upload_id}/{name}%00",
    }
    for case, path in paths.items():
        status, body = _raw_get(server.port, path + query)
        assert (status, body.get("error")) == (400, "bad_path"), (case, status, body)
