"""Test images made with Pillow, and a media worker in-process."""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from PIL import Image

from offload.publish import Publisher
from offload.status import JobRecord
from offload.testing import serving
from offload_media.settings import MediaSettings
from offload_media.worker import SPEC
from tests.support import Api, make_settings


def photo(width: int = 4000, height: int = 3000, *, orientation: int = 6, gps: bool = True) -> bytes:
    """A JPEG whose pixels are stored sideways, with Orientation and (optionally) GPS EXIF."""
    image = Image.new("RGB", (width, height), (200, 30, 30))
    image.paste((30, 30, 200), (0, 0, width // 4, height // 4))  # a blue corner to check orientation
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "OffloadCam"
    if gps:
        exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 18.0)})
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, exif=exif)
    return buffer.getvalue()


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A tiny PNG whose header claims ``width`` × ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + chunk(b"IEND", b"")
    )


def many_frames_gif(frames: int = 10_000) -> bytes:
    """An animated GIF with ``frames`` tiny frames."""
    images = [Image.new("P", (2, 2), i % 2) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], optimize=False, duration=10)
    return buffer.getvalue()


@pytest.fixture
def media_settings(servers) -> MediaSettings:
    return MediaSettings(**make_settings().model_dump())


@pytest.fixture
def media_worker(media_settings: MediaSettings, publisher: Publisher) -> Iterator[dramatiq.Worker]:
    with serving(SPEC, media_settings, threads=2, stop_timeout_ms=20_000) as worker:
        yield worker


def upload(api: Api, data: bytes) -> str:
    """Upload ``data`` as tenant acme; returns the upload id."""
    response = api.post("/v1/uploads", data=data, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["id"])


def run_job(api: Api, publisher: Publisher, job_type: str, payload: dict[str, Any], timeout: float = 60) -> JobRecord:
    """Submit through the API and wait for the job to finish."""
    response = api.submit(job_type, payload)
    assert response.status_code == 202, response.get_json()
    record = publisher.wait(response.get_json()["id"], timeout=timeout)
    assert record is not None, "the job did not finish in time"
    return record


def download(api: Api, url: str) -> Image.Image:
    """Fetch a signed output link and open it as an image."""
    response = api.anonymous_get(url)
    assert response.status_code == 200 and response.headers["X-Content-Type-Options"] == "nosniff"
    image = Image.open(io.BytesIO(response.data))
    image.load()
    return image
