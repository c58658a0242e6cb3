"""Uploads (sniffed, size-limited, names as metadata only) and signed downloads."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask import Flask

from offload.publish import Publisher
from offload_api.app import create_app
from tests.support import Api, make_settings

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 2000 + b"\xff\xd9"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


def _upload(api: Api, body: bytes, **kw: Any) -> Any:
    return api.post("/v1/uploads", data=body, headers={"Content-Type": "application/octet-stream"}, **kw)


def test_a_raw_upload_is_stored_and_its_type_sniffed_from_the_bytes(api: Api, app: Flask) -> None:
    response = _upload(api, JPEG, query_string={"filename": "../../etc/holiday\u202e gnp.jpg"})
    assert response.status_code == 201
    body = response.get_json()
    assert body["content_type"] == "image/jpeg" and body["size"] == len(JPEG)
    assert body["filename"] == "holiday gnp.jpg"  # last path part, no bidi override
    storage = app.extensions["offload"].storage
    with storage.open(f"acme/{body['id']}/source") as handle:
        assert handle.read() == JPEG


def test_a_multipart_upload_works_too(api: Api) -> None:
    response = api.post("/v1/uploads", data={"file": (io.BytesIO(PNG), "pic.jpg")}, content_type="multipart/form-data")
    assert response.status_code == 201
    assert response.get_json()["content_type"] == "image/png"  # the bytes say PNG, whatever the name says


@pytest.mark.parametrize(
    "body",
    [
        b"%!PS-Adobe-3.0 EPSF-3.0\n",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"SIMPLE  =                    T",
        b"8BPS\x00\x01",
        b"II*\x00",
        b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heic",  # HEIF and AVIF stills are ISO media too
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1",
    ],
)
def test_other_formats_renamed_as_images_are_refused(api: Api, body: bytes) -> None:
    response = _upload(api, body, query_string={"filename": "innocent.png"})
    assert response.status_code == 422 and response.get_json()["error"] == "unsupported_format"


def test_an_upload_over_the_limit_is_413_and_leaves_nothing(app: Flask, api: Api) -> None:
    limit = app.extensions["offload"].settings.max_upload_bytes
    response = _upload(api, JPEG[:100] + b"\x00" * limit)
    assert response.status_code == 413 and response.get_json()["error"] == "payload_too_large"


def test_a_signed_link_downloads_as_an_attachment_with_nosniff(api: Api, app: Flask) -> None:
    upload_id = _upload(api, JPEG).get_json()["id"]
    signer = app.extensions["offload"].signer
    link = signer.path(f"acme/{upload_id}/source")
    response = api.anonymous_get(link)  # no API key needed: the link is the credential
    assert response.status_code == 200 and response.data == JPEG
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"].startswith("attachment")


def test_expired_tampered_foreign_and_odd_links_are_refused(api: Api, app: Flask) -> None:
    upload_id = _upload(api, JPEG).get_json()["id"]
    signer = app.extensions["offload"].signer
    key = f"acme/{upload_id}/source"
    expires, sig = signer.sign(key, ttl=60, now=0)  # expired long ago
    expired = api.anonymous_get(f"/v1/files/{key}?expires={expires}&sig={sig}")
    assert expired.status_code == 410 and expired.get_json()["error"] == "link_expired"
    expires, sig = signer.sign(key)
    tampered = api.anonymous_get(f"/v1/files/{key}?expires={expires + 1}&sig={sig}")
    assert tampered.status_code == 403 and tampered.get_json()["error"] == "invalid_signature"
    assert api.as_("globex").get(f"/v1/files/{key}?expires={expires}&sig={sig}").status_code == 404
    assert api.get(f"/v1/files/{key}?expires={expires}&sig={sig}").status_code == 200
    missing_key = f"acme/{upload_id}/other.png"
    e2, s2 = signer.sign(missing_key)
    assert api.anonymous_get(f"/v1/files/{missing_key}?expires={e2}&sig={s2}").status_code == 404
    for odd in (f"acme/../{upload_id}/source", f"acme/{upload_id}%2Fsource", "acme/source"):
        assert api.anonymous_get(f"/v1/files/{odd}?expires={expires}&sig={sig}").status_code in (400, 404)


MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + b"\x00" * 100
WEBM = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01" + b"\x00" * 100
AVI = b"RIFF\x00\x10\x00\x00AVI LIST" + b"\x00" * 100


@pytest.mark.parametrize(
    ("body", "content_type"), [(MP4, "video/mp4"), (WEBM, "video/x-matroska"), (AVI, "video/x-msvideo")]
)
def test_videos_are_sniffed_too(api: Api, body: bytes, content_type: str) -> None:
    response = _upload(api, body, query_string={"filename": "clip.bin"})
    assert response.status_code == 201 and response.get_json()["content_type"] == content_type


def test_videos_have_their_own_larger_limit(publisher: Publisher) -> None:
    settings = make_settings(max_upload_bytes=10_000, max_video_upload_bytes=50_000)
    api = Api(create_app(settings, publisher=publisher).test_client())
    image, video = JPEG[:100] + b"\x00" * 20_000, MP4 + b"\x00" * 20_000
    assert _upload(api, image).status_code == 413
    assert _upload(api, video).status_code == 201
    too_big = _upload(api, MP4 + b"\x00" * 60_000)
    assert too_big.status_code == 413 and too_big.get_json()["error"] == "payload_too_large"
    assert "50,000" in too_big.get_json()["detail"]
