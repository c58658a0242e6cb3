"""Image jobs end to end: upload, resize, signed downloads; and the hostile inputs of §7.4."""

from __future__ import annotations

import io
from pathlib import Path

import dramatiq
import pytest
from flask import Flask
from PIL import Image

from offload.publish import Publisher
from tests.support import Api
from tests.support.media import many_frames_gif, photo, png_bomb, run_job, upload


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/self/status")


def _reset_peak_memory() -> int:
    """Reset this process's peak RSS (the worker runs in it) and return the current RSS in bytes."""
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS
    return _status_kb("VmRSS") * 1024


def _peak_memory() -> int:
    """The highest RSS since the last reset, in bytes."""
    return _status_kb("VmHWM") * 1024


def test_a_sideways_12_mp_photo_becomes_three_upright_sizes_in_webp_and_jpeg_without_exif(
    api: Api, app: Flask, publisher: Publisher, media_worker: dramatiq.Worker
) -> None:
    upload_id = upload(api, photo())
    record = run_job(
        api,
        publisher,
        "image.resize",
        {
            "source": {"upload_id": upload_id},
            "sizes": [{"width": 2048, "height": 2048}, {"width": 1024, "height": 1024}, {"width": 256, "height": 256}],
            "formats": ["webp", "jpeg"],
        },
    )
    assert record is not None and record.state == "succeeded", record
    outputs = record.result["outputs"]
    assert record.result["source"] == {"width": 4000, "height": 3000, "format": "jpeg"}
    assert sorted(o["name"] for o in outputs) == sorted(
        f"{w}x{h}.{ext}" for w, h in ((1536, 2048), (768, 1024), (192, 256)) for ext in ("webp", "jpg")
    )
    for output in outputs:
        download = api.anonymous_get(output["url"])
        assert download.status_code == 200 and download.headers["X-Content-Type-Options"] == "nosniff"
        image = Image.open(io.BytesIO(download.data))
        assert image.size == (output["width"], output["height"]) and image.height > image.width  # upright
        assert not image.getexif() and "exif" not in image.info  # no EXIF, no GPS
        pixel = image.convert("RGB").getpixel((image.width - 2, 2))
        assert isinstance(pixel, tuple) and pixel[2] > 150  # the blue corner is now top right
    signer = app.extensions["offload"].signer
    key = outputs[0]["url"].split("?")[0].removeprefix("/v1/files/")
    expires, sig = signer.sign(key, ttl=60, now=0)
    assert api.anonymous_get(f"/v1/files/{key}?expires={expires}&sig={sig}").status_code == 410
    assert api.as_("globex").get(outputs[0]["url"]).status_code == 404


def test_a_thumbnail_is_at_most_its_size_on_the_long_side(
    api: Api, publisher: Publisher, media_worker: dramatiq.Worker
) -> None:
    upload_id = upload(api, photo(1200, 800, orientation=1, gps=False))
    record = run_job(api, publisher, "image.thumbnail", {"source": {"upload_id": upload_id}, "size": 400})
    assert record.state == "succeeded" and [(o["width"], o["height"]) for o in record.result["outputs"]] == [(400, 267)]


def test_small_images_are_not_enlarged_unless_asked(
    api: Api, publisher: Publisher, media_worker: dramatiq.Worker
) -> None:
    upload_id = upload(api, photo(300, 200, orientation=1, gps=False))
    record = run_job(
        api,
        publisher,
        "image.resize",
        {"source": {"upload_id": upload_id}, "sizes": [{"width": 1000}, {"width": 100, "height": 100, "fit": "cover"}]},
    )
    sizes = sorted((o["width"], o["height"]) for o in record.result["outputs"])
    assert sizes == [(100, 100), (300, 200)]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (png_bomb(), "image_too_large"),
        (photo(1600, 1200, orientation=1, gps=False)[:20_000], "invalid_image"),
        (many_frames_gif(), "animated_image"),
    ],
)
def test_hostile_images_fail_with_a_clear_code_and_the_worker_goes_on(
    api: Api, publisher: Publisher, media_worker: dramatiq.Worker, data: bytes, code: str
) -> None:
    upload_id = upload(api, data)
    baseline = _reset_peak_memory()
    record = run_job(api, publisher, "image.resize", {"source": {"upload_id": upload_id}, "sizes": [{"width": 100}]})
    assert record.state == "failed" and record.error_code == code and record.attempts == 1
    grew_mb = (_peak_memory() - baseline) / 2**20
    assert grew_mb < 50, f"the worker's memory peaked {grew_mb:.0f} MB above where it was"
    healthy = run_job(api, publisher, "image.thumbnail", {"source": {"upload_id": upload(api, photo(400, 300))}})
    assert healthy.state == "succeeded"


def test_an_animated_image_gives_its_first_frame_when_asked_within_the_frame_limit(
    api: Api, publisher: Publisher, media_worker: dramatiq.Worker
) -> None:
    record = run_job(
        api,
        publisher,
        "image.resize",
        {
            "source": {"upload_id": upload(api, many_frames_gif(20))},
            "sizes": [{"width": 2}],
            "animated": "first_frame",
            "formats": ["png"],
        },
    )
    assert record.state == "succeeded"
    too_many = run_job(
        api,
        publisher,
        "image.resize",
        {"source": {"upload_id": upload(api, many_frames_gif())}, "sizes": [{"width": 2}], "animated": "first_frame"},
    )
    assert too_many.state == "failed" and too_many.error_code == "too_many_frames"


def test_another_tenants_upload_cannot_be_used(api: Api, publisher: Publisher, media_worker: dramatiq.Worker) -> None:
    upload_id = upload(api, photo(400, 300))
    response = api.as_("globex").submit("image.thumbnail", {"source": {"upload_id": upload_id}})
    record = publisher.wait(response.get_json()["id"], timeout=30)
    assert record.state == "failed" and record.error_code == "upload_not_found"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"source": {}, "sizes": [{"width": 10}]}, "payload.source"),
        ({"source": {"upload_id": "x"}, "sizes": [{"width": 10}]}, "payload.source.upload_id"),
        (
            {"source": {"upload_id": "0" * 36, "url": "https://example.com/a.jpg"}, "sizes": [{"width": 10}]},
            "payload.source",
        ),
        ({"source": {"upload_id": "0" * 36}, "sizes": []}, "payload.sizes"),
        ({"source": {"upload_id": "0" * 36}, "sizes": [{"fit": "cover", "width": 10}]}, "payload.sizes[0]"),
        ({"source": {"upload_id": "0" * 36}, "sizes": [{"width": 10}], "formats": ["eps"]}, "payload.formats[0]"),
    ],
)
def test_bad_image_requests_are_422(api: Api, payload: dict, field: str) -> None:
    response = api.submit("image.resize", payload)
    assert response.status_code == 422 and field in [e["field"] for e in response.get_json()["errors"]]
