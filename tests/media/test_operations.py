"""Avatars, optimised re-encodes, AVIF and batches, end to end through the API and a real worker."""

from __future__ import annotations

import io
import os
import random
import time
from pathlib import Path
from types import SimpleNamespace

import dramatiq
import pytest
from PIL import Image, ImageOps, ImageStat

import offload_media.handlers
from offload.publish import Publisher
from offload_media.settings import MediaSettings
from tests.http_source import Source
from tests.s3_server import TEST_BACKEND, stored
from tests.support import Api
from tests.support.media import download, many_frames_gif, photo, run_job, upload


def _noisy_subject_on_the_right(width: int = 1200, height: int = 400) -> bytes:
    """A flat grey field with a square of random 16-pixel blocks at its right end (the 'subject')."""
    rng = random.Random(7)
    image = Image.new("RGB", (width, height), (128, 128, 128))
    side = height // 16
    noise = Image.frombytes("RGB", (side, side), bytes(rng.randrange(256) for _ in range(side * side * 3)))
    image.paste(noise.resize((height, height), Image.Resampling.NEAREST), (width - height, 0))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _spread(image: Image.Image) -> float:
    return sum(ImageStat.Stat(image.convert("L")).stddev)


def test_an_avatar_set_is_exact_squares_upright_and_stripped(
    api: Api, publisher: Publisher, media_worker: dramatiq.Worker
) -> None:
    record = run_job(api, publisher, "image.avatar", {"source": {"upload_id": upload(api, photo(1200, 800))}})
    assert record.state == "succeeded", record
    outputs = record.result["outputs"]
    assert [(o["name"], o["width"], o["height"]) for o in outputs] == [
        (f"{s}x{s}.webp", s, s) for s in (256, 128, 64, 32)
    ]
    for output in outputs:
        image = download(api, output["url"])
        assert image.format == "WEBP" and image.size == (output["width"],) * 2 and not image.getexif()


def test_a_smart_avatar_keeps_the_detailed_part_a_centre_one_does_not(
    api: Api, publisher: Publisher, media_worker: dramatiq.Worker
) -> None:
    source = {"upload_id": upload(api, _noisy_subject_on_the_right())}
    spreads = {}
    for strategy in ("centre", "smart"):
        payload = {"source": source, "sizes": [128], "crop": strategy, "format": "png"}
        record = run_job(api, publisher, "image.avatar", payload)
        assert record.state == "succeeded", record
        spreads[strategy] = _spread(download(api, record.result["outputs"][0]["url"]))
    assert spreads["centre"] < 1 and spreads["smart"] > 40, spreads


def test_a_small_source_still_gives_every_avatar_size(
    api: Api, publisher: Publisher, media_worker: dramatiq.Worker
) -> None:
    source = {"upload_id": upload(api, photo(90, 60, orientation=1, gps=False))}
    record = run_job(api, publisher, "image.avatar", {"source": source, "sizes": [256, 48], "format": "jpeg"})
    assert [(o["width"], o["height"]) for o in record.result["outputs"]] == [(256, 256), (48, 48)]


def test_optimizing_a_camera_jpeg_saves_bytes_applies_orientation_and_strips_gps(
    api: Api, publisher: Publisher, media_worker: dramatiq.Worker
) -> None:
    original = _camera_jpeg(quality=97)
    record = run_job(api, publisher, "image.optimize", {"source": {"upload_id": upload(api, original)}})
    assert record.state == "succeeded", record
    result = record.result
    assert result["bytes_before"] == len(original) and result["bytes_after"] < 0.7 * len(original), result
    assert result["kept_original"] is False
    image = download(api, result["outputs"][0]["url"])
    assert image.format == "JPEG" and image.size == (600, 800) and not image.getexif()  # upright, no EXIF


def test_when_re_encoding_would_grow_the_file_the_original_is_kept_without_its_metadata(
    api: Api, publisher: Publisher, media_worker: dramatiq.Worker
) -> None:
    original = _camera_jpeg(quality=30)
    record = run_job(api, publisher, "image.optimize", {"source": {"upload_id": upload(api, original)}, "quality": 95})
    result = record.result
    assert result["kept_original"] is True and result["bytes_after"] < result["bytes_before"], result
    kept = download(api, result["outputs"][0]["url"])
    exif = kept.getexif()
    assert dict(exif) == {0x0112: 6} and not exif.get_ifd(0x8825)  # only the orientation is left: no GPS, no make
    source = Image.open(io.BytesIO(original))
    assert kept.tobytes() == source.tobytes()  # the pixels are untouched (lossless)
    assert ImageOps.exif_transpose(kept).size == (600, 800)  # and it still displays upright


def test_an_optimized_png_can_become_webp_and_avif(
    api: Api, publisher: Publisher, media_worker: dramatiq.Worker
) -> None:
    png = io.BytesIO()
    ImageOps.exif_transpose(Image.open(io.BytesIO(_camera_jpeg(quality=90)))).save(png, "PNG")
    source = {"upload_id": upload(api, png.getvalue())}
    for fmt in ("webp", "avif"):
        record = run_job(api, publisher, "image.optimize", {"source": source, "format": fmt, "quality": 60})
        assert record.state == "succeeded", record
        output = record.result["outputs"][0]
        image = download(api, output["url"])
        assert image.format == fmt.upper() and image.size == (600, 800)
        assert record.result["kept_original"] is False and output["bytes"] < record.result["bytes_before"] / 4


def test_an_animated_image_is_not_optimized(api: Api, publisher: Publisher, media_worker: dramatiq.Worker) -> None:
    record = run_job(api, publisher, "image.optimize", {"source": {"upload_id": upload(api, many_frames_gif(3))}})
    assert record.state == "failed" and record.error_code == "animated_image"


def test_a_batch_reports_each_item_and_a_bad_one_does_not_stop_the_rest(
    api: Api, publisher: Publisher, media_worker: dramatiq.Worker
) -> None:
    good = upload(api, photo(800, 600, orientation=1, gps=False))
    truncated = upload(api, photo(1600, 1200, orientation=1, gps=False)[:20_000])
    payload = {
        "sources": [{"upload_id": good}, {"upload_id": truncated}, {"upload_id": "0" * 36}, {"upload_id": good}],
        "operation": {"thumbnail": {"size": 200, "format": "avif"}},
    }
    record = run_job(api, publisher, "image.batch", payload)
    assert record.state == "succeeded", record
    result = record.result
    assert (result["succeeded"], result["failed"]) == (2, 2)
    items = result["items"]
    assert [i["status"] for i in items] == ["succeeded", "failed", "failed", "succeeded"]
    assert items[1]["error"]["code"] == "invalid_image" and items[1]["error"]["retryable"] is False
    assert items[2]["error"]["code"] == "upload_not_found"
    names = [item["result"]["outputs"][0]["name"] for item in (items[0], items[3])]
    assert names == ["0-200x150.avif", "3-200x150.avif"]
    assert download(api, items[3]["result"]["outputs"][0]["url"]).size == (200, 150)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"sources": [], "operation": {"thumbnail": {}}}, "payload.sources"),
        ({"sources": [{"upload_id": "0" * 36}], "operation": {}}, "payload.operation"),
        ({"sources": [{"upload_id": "0" * 36}], "operation": {"thumbnail": {}, "optimize": {}}}, "payload.operation"),
        ({"sources": [{"upload_id": "0" * 36}] * 101, "operation": {"thumbnail": {}}}, "payload.sources"),
    ],
)
def test_bad_batches_are_422(api: Api, payload: dict, field: str) -> None:
    response = api.submit("image.batch", payload)
    assert response.status_code == 422 and field in [e["field"] for e in response.get_json()["errors"]]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"source": {"upload_id": "0" * 36}, "sizes": [8]}, "payload"),
        ({"source": {"upload_id": "0" * 36}, "sizes": [64, 64]}, "payload"),
        ({"source": {"upload_id": "0" * 36}, "crop": "faces"}, "payload.crop"),
    ],
)
def test_bad_avatar_requests_are_422(api: Api, payload: dict, field: str) -> None:
    response = api.submit("image.avatar", payload)
    assert response.status_code == 422 and field in [e["field"] for e in response.get_json()["errors"]]


def _camera_jpeg(*, quality: int) -> bytes:
    """A sideways 800×600 'camera' JPEG with texture, Orientation=6, a maker and GPS."""
    rng = random.Random(3)
    image = Image.effect_mandelbrot((800, 600), (-2.0, -1.2, 0.8, 1.2), 64).convert("RGB")
    image.paste((30, 30, 200), (0, 0, 200, 150))
    speckle = Image.frombytes("L", (800, 600), bytes(rng.randrange(40) for _ in range(800 * 600)))
    image = Image.merge("RGB", [Image.blend(band, speckle, 0.3) for band in image.split()])
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "OffloadCam"
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 18.0)})
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, exif=exif, comment=b"taken at home")
    return buffer.getvalue()


def _make_old(settings: MediaSettings, upload_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put an upload past retention: on disk by its times; on S3 (which sets them) by moving the sweep's clock."""
    if TEST_BACKEND == "s3":
        time.sleep(1.05 - time.time() % 1)  # S3 keeps whole seconds: what is written next is after the cutoff
        cutoff = float(int(time.time()))
        later = SimpleNamespace(time=lambda: cutoff + settings.storage_retention)
        monkeypatch.setattr(offload_media.handlers, "time", later)
        return
    folder = Path(settings.storage_dir) / "acme" / upload_id
    past = time.time() - settings.storage_retention - 3600
    for item in [*folder.iterdir(), folder]:
        os.utime(item, (past, past))


def test_the_cleanup_job_removes_old_uploads_and_outputs_and_clients_cannot_submit_it(
    api: Api,
    publisher: Publisher,
    media_worker: dramatiq.Worker,
    media_settings: MediaSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = upload(api, photo(64, 48))
    _make_old(media_settings, old, monkeypatch)
    fresh = upload(api, photo(64, 48))
    assert api.submit("storage.cleanup", {}).status_code == 422  # Offload's own job: not for clients
    prepared = publisher.preparer.prepare({"type": "storage.cleanup", "payload": {}}, tenant="ops", internal=True)
    record = publisher.wait(publisher.enqueue(prepared).job_id, timeout=30)
    assert record is not None and record.state == "succeeded", record
    assert record.result["folders"] >= 1 and record.result["dry_run"] is False
    assert stored(media_settings, "acme", old) == {} and list(stored(media_settings, "acme", fresh)) == ["source"]
    gone = run_job(api, publisher, "image.thumbnail", {"source": {"upload_id": old}})
    assert gone.state == "failed" and gone.error_code == "upload_not_found"


def test_a_source_url_is_fetched_through_the_guard_and_its_refusals_fail_clearly(
    api: Api, publisher: Publisher, media_worker: dramatiq.Worker, source: Source
) -> None:
    source.body = photo(640, 480, orientation=1, gps=False)
    fetched = run_job(api, publisher, "image.thumbnail", {"source": {"url": source.url("/cat.jpg")}, "size": 64})
    assert fetched.state == "succeeded" and fetched.result["outputs"][0]["width"] == 64
    source.status = 404
    missing = run_job(api, publisher, "image.thumbnail", {"source": {"url": source.url("/gone.jpg")}})
    assert missing.state == "failed" and missing.error_code == "source_refused" and missing.attempts == 1
    assert source.paths == ["/cat.jpg", "/gone.jpg"]
