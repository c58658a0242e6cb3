"""reliability-security.md §7.4, rows 25-31: hostile images, through the real API and a real media worker.

Uploads go through ``POST /v1/uploads`` (the type is sniffed from the bytes), jobs through
``POST /v1/jobs`` to a media worker in this process over RabbitMQ and Redis; URL sources come from
an HTTP server on 127.0.0.1; outputs are fetched back through their signed download links.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from functools import cache
from typing import Any

import dramatiq
import pytest
from PIL import EpsImagePlugin, Image, ImageFile

from offload.publish import Publisher
from tests.http_source import Source
from tests.media.test_images import _peak_memory, _reset_peak_memory
from tests.support.media import many_frames_gif, photo, png_bomb, run_job, upload
from tests.support.security import CheckedApi

#: One small output size: the hostile inputs must fail before any resizing.
SIZES = {"sizes": [{"width": 100}]}


@cache
def _many_frames_gif() -> bytes:
    return many_frames_gif()


@cache
def _many_frames_webp(frames: int = 10_000) -> bytes:
    images = [Image.new("RGB", (2, 2), (255 * (i % 2), 0, 0)) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "WEBP", save_all=True, append_images=images[1:], duration=10, lossless=True)
    return buffer.getvalue()


def _corrupt_jpeg() -> bytes:
    """A JPEG whose first Huffman table is cut short: the decoder cannot go on."""
    return photo(800, 600, orientation=1, gps=False).replace(b"\xff\xc4", b"\xff\xc4\x00\x03\x00", 1)


#: (image maker, extra payload, error code). Each fails at once (1 attempt) and the worker goes on.
HOSTILE: dict[str, tuple[Callable[[], bytes], dict[str, str], str]] = {
    "row25-png-declaring-400mp": (png_bomb, {}, "image_too_large"),
    "row26-png-declaring-120mp": (lambda: png_bomb(12_000, 10_000), {}, "image_too_large"),
    "row28-truncated-jpeg": (lambda: photo(1600, 1200, orientation=1, gps=False)[:20_000], {}, "invalid_image"),
    "row28-corrupt-jpeg": (_corrupt_jpeg, {}, "invalid_image"),
    "row29-gif-10000-frames": (_many_frames_gif, {"animated": "first_frame"}, "too_many_frames"),
    "row29-webp-10000-frames": (_many_frames_webp, {"animated": "first_frame"}, "too_many_frames"),
    # Not asking for the first frame, an animation is refused whatever its length (the codebase's code).
    "row29-gif-10000-frames-default": (_many_frames_gif, {}, "animated_image"),
}


@pytest.mark.parametrize(("make", "extra", "code"), HOSTILE.values(), ids=HOSTILE.keys())
def test_rows_25_26_28_29_hostile_images_fail_at_once_fast_and_small(
    api: CheckedApi,
    publisher: Publisher,
    media_worker: dramatiq.Worker,
    make: Callable[[], bytes],
    extra: dict[str, str],
    code: str,
) -> None:
    upload_id = upload(api, make())
    baseline = _reset_peak_memory()
    record = run_job(api, publisher, "image.resize", {"source": {"upload_id": upload_id}, **SIZES, **extra})
    grew_mb = (_peak_memory() - baseline) / 2**20
    assert (record.state, record.error_code, record.attempts) == ("failed", code, 1), record
    assert record.started_at is not None and record.finished_at is not None
    assert record.finished_at - record.started_at <= 1000, "the header check took more than a second"
    assert grew_mb < 50, f"the worker's memory peaked {grew_mb:.0f} MB above where it was"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # row 28: truncated data is never padded out
    healthy = run_job(api, publisher, "image.thumbnail", {"source": {"upload_id": upload(api, photo(400, 300))}})
    assert healthy.state == "succeeded"


def _eps() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "EPS")
    return buffer.getvalue()


def _tiff() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "TIFF")
    return buffer.getvalue()


def _fits() -> bytes:
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    2"]
    cards += ["NAXIS1  =                    8", "NAXIS2  =                    8", "END"]
    header = "".join(card.ljust(80) for card in cards).ljust(2880).encode()
    return header + bytes(2880)


#: Row 27: other formats, named ``.png``.
FOREIGN: dict[str, Callable[[], bytes]] = {
    "row27-fits-as-png": _fits,
    "row27-psd-as-png": lambda: b"8BPS\x00\x01" + bytes(6) + b"\x00\x03" + bytes((0, 0, 0, 8, 0, 0, 0, 8, 0, 8, 0, 3)),
    "row27-eps-as-png": _eps,
    "row27-svg-as-png": lambda: b"<svg xmlns='http://www.w3.org/2000/svg' width='8' height='8'/>",
    "row27-tiff-as-png": _tiff,
}


@pytest.mark.parametrize("make", FOREIGN.values(), ids=FOREIGN.keys())
def test_row27_other_formats_renamed_png_are_refused_on_upload_and_from_a_url_never_parsed(
    api: CheckedApi,
    publisher: Publisher,
    media_worker: dramatiq.Worker,
    source: Source,
    monkeypatch: pytest.MonkeyPatch,
    make: Callable[[], bytes],
) -> None:
    data = make()
    opened: list[object] = []
    real_open = EpsImagePlugin.EpsImageFile._open

    def spy(self: EpsImagePlugin.EpsImageFile) -> None:
        opened.append(self)
        real_open(self)

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", spy)
    response = api.post(
        "/v1/uploads",
        data=data,
        query_string={"filename": "innocent.png"},
        headers={"Content-Type": "image/png"},
    )
    assert (response.status_code, response.get_json()["error"]) == (422, "unsupported_format")
    source.body = data  # the same bytes as a URL source reach the worker's format allow-list
    record = run_job(api, publisher, "image.resize", {"source": {"url": source.url("/innocent.png")}, **SIZES})
    assert (record.state, record.error_code, record.attempts) == ("failed", "unsupported_format", 1), record
    assert source.requests == 1 and opened == []  # fetched once; the EPS parser (and Ghostscript) never ran


def _download(api: CheckedApi, url: str) -> tuple[Any, Image.Image]:
    response = api.anonymous_get(url)
    assert response.status_code == 200, response.get_json()
    image = Image.open(io.BytesIO(response.data))
    image.load()
    return response, image


def _big_icc_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 200, 30)).save(buffer, "JPEG", icc_profile=os.urandom(1 << 20))
    return buffer.getvalue()


def _big_exif_png() -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "x" * (1 << 20)  # ImageDescription: 1 MB
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (10, 200, 30)).save(buffer, "PNG", exif=exif)
    return buffer.getvalue()


#: Row 30: (image, job type, options). Each output must be upright and carry no EXIF and no big blob.
METADATA: dict[str, tuple[Callable[[], bytes], str, dict[str, Any]]] = {
    "row30-gps-orientation6-resize": (photo, "image.resize", {"sizes": [{"width": 1024, "height": 1024}]}),
    "row30-gps-orientation6-optimize": (lambda: photo(1200, 900), "image.optimize", {}),
    "row30-1mb-icc-resize": (_big_icc_jpeg, "image.resize", {"sizes": [{"width": 320}]}),
    "row30-1mb-icc-optimize": (_big_icc_jpeg, "image.optimize", {}),
    "row30-1mb-exif-png-to-jpeg": (_big_exif_png, "image.resize", {"sizes": [{"width": 320}], "formats": ["jpeg"]}),
    "row30-1mb-exif-kept-on-request": (
        _big_exif_png,
        "image.resize",
        {"sizes": [{"width": 320}], "formats": ["jpeg", "png"], "keep_metadata": True},
    ),
}


@pytest.mark.parametrize(("make", "job_type", "options"), METADATA.values(), ids=METADATA.keys())
def test_row30_outputs_are_upright_without_exif_gps_or_oversized_metadata(
    api: CheckedApi,
    publisher: Publisher,
    media_worker: dramatiq.Worker,
    make: Callable[[], bytes],
    job_type: str,
    options: dict[str, Any],
) -> None:
    data = make()
    record = run_job(api, publisher, job_type, {"source": {"upload_id": upload(api, data)}, **options})
    assert record.state == "succeeded", record
    for output in record.result["outputs"]:
        response, image = _download(api, output["url"])
        assert len(response.data) < 256 * 1024, f"{output['name']} is {len(response.data)} bytes"
        assert len(image.info.get("icc_profile") or b"") <= 128 * 1024
        exif = image.getexif()
        assert 0x8825 not in exif and 0x010E not in exif  # no GPS, no 1 MB description
        assert exif.get(0x0112, 1) == 1  # orientation applied to the pixels, not left to the viewer
        if not options.get("keep_metadata"):
            assert not exif and "exif" not in image.info
        if data[:2] == b"\xff\xd8" and len(data) < 1 << 20:  # the sideways photo: now portrait, blue corner top right
            assert image.height > image.width
            pixel = image.convert("RGB").getpixel((image.width - 2, 2))
            assert isinstance(pixel, tuple) and pixel[2] > 150


def _polyglot() -> bytes:
    """A JPEG that is also an HTML page: markup in a comment segment and after the end of the image."""
    jpeg = photo(600, 400, orientation=1, gps=False)
    html = b"<html><body><script>alert(document.cookie)</script></body></html>"
    comment = b"\xff\xfe" + (len(html) + 2).to_bytes(2, "big") + html
    return jpeg[:2] + comment + jpeg[2:] + html


@pytest.mark.parametrize(
    ("job_type", "options"),
    [("image.resize", {"sizes": [{"width": 300}]}), ("image.optimize", {})],
    ids=["row31-polyglot-resize", "row31-polyglot-optimize"],
)
def test_row31_a_jpeg_html_polyglot_is_served_re_encoded_as_an_image_attachment(
    api: CheckedApi, publisher: Publisher, media_worker: dramatiq.Worker, job_type: str, options: dict
) -> None:
    record = run_job(api, publisher, job_type, {"source": {"upload_id": upload(api, _polyglot())}, **options})
    assert record.state == "succeeded", record
    for output in record.result["outputs"]:
        response, image = _download(api, output["url"])
        assert image.format == "JPEG" and response.headers["Content-Type"] == "image/jpeg"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Disposition"].startswith("attachment")
        assert b"<script" not in response.data and b"<html" not in response.data
