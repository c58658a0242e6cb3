"""A media job whose worker is killed mid-job leaves exactly one complete set of outputs (issue 5)."""

from __future__ import annotations

import io
import subprocess
import tempfile
from pathlib import Path

from PIL import Image

from tests.helpers import wait_for
from tests.s3_server import read_stored, stored
from tests.support.media import photo
from tests.support.video import make_clip
from tests.system.stack import Api, Worker


def _job(api: Api, job_id: str) -> dict:
    status, _, body = api.request("GET", f"/v1/jobs/{job_id}")
    assert status == 200
    return body


def test_a_resize_killed_mid_job_ends_with_one_complete_set_of_outputs(env, logs: Path, tmp_path: Path) -> None:
    env = {**env, "OFFLOAD_STORAGE_DIR": str(tmp_path / "storage")}
    api, worker = Api(env, logs), Worker(env, logs, domain="media", threads=1)
    try:
        upload_id = api.upload(photo(4000, 3000))
        sizes = [{"width": w} for w in (3000, 2600, 2200, 1800, 1400, 1000, 800, 600, 400, 200)]
        payload = {"source": {"upload_id": upload_id}, "sizes": sizes, "formats": ["png", "webp", "jpeg"]}
        status, _, accepted = api.request("POST", "/v1/jobs", {"type": "image.resize", "payload": payload})
        assert status == 202, accepted
        job_id = accepted["id"]
        # Kill -9 once some outputs are written and most are still to come.
        wait_for(lambda: 1 <= _job(api, job_id)["progress"]["percent"] <= 50, timeout=60, interval=0.02)
        worker.kill()
        first_attempt = sorted(stored(env, "acme", job_id))
        assert first_attempt and _job(api, job_id)["state"] == "running"
        worker.start()
        wait_for(lambda: _job(api, job_id)["state"] in ("succeeded", "failed", "dead"), timeout=120)
        job = _job(api, job_id)
        assert job["state"] == "succeeded" and job["attempts"] == 2, job
        outputs = job["result"]["outputs"]
        expected = {o["name"] for o in outputs}
        assert len(expected) == len(outputs) == 30
        on_disk = set(stored(env, "acme", job_id))
        assert on_disk == expected, f"extra: {on_disk - expected}, missing: {expected - on_disk}"  # no .part files
        for output in outputs:
            data = read_stored(env, f"acme/{job_id}/{output['name']}")
            assert len(data) == output["bytes"]
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # complete, not truncated
                assert image.size == (output["width"], output["height"])
    finally:
        api.stop()
        worker.stop()


def test_a_batch_killed_mid_way_resumes_without_redoing_the_items_it_finished(env, logs: Path, tmp_path: Path) -> None:
    env = {**env, "OFFLOAD_STORAGE_DIR": str(tmp_path / "storage")}
    api, worker = Api(env, logs), Worker(env, logs, domain="media", threads=1)
    try:
        sources = [{"upload_id": api.upload(photo(3000, 2000, orientation=1, gps=False))} for _ in range(8)]
        operation = {"resize": {"sizes": [{"width": 2400}, {"width": 1200}], "formats": ["png", "jpeg"]}}
        status, _, accepted = api.request(
            "POST", "/v1/jobs", {"type": "image.batch", "payload": {"sources": sources, "operation": operation}}
        )
        assert status == 202, accepted
        job_id = accepted["id"]
        wait_for(lambda: 40 <= _job(api, job_id)["progress"]["percent"] <= 70, timeout=120, interval=0.02)
        worker.kill()
        first_item = {name: at for name, at in stored(env, "acme", job_id).items() if name.startswith("0-")}
        assert len(first_item) == 4
        worker.start()
        wait_for(lambda: _job(api, job_id)["state"] in ("succeeded", "failed", "dead"), timeout=180)
        job = _job(api, job_id)
        assert job["state"] == "succeeded" and job["attempts"] == 2, job
        assert job["result"]["succeeded"] == 8 and job["result"]["failed"] == 0
        expected = {o["name"] for item in job["result"]["items"] for o in item["result"]["outputs"]}
        files = stored(env, "acme", job_id)
        assert set(files) == expected and len(expected) == 32  # no .part files left
        # The first item was recorded before the kill: its files were not written again.
        assert {name: files[name] for name in first_item} == first_item
    finally:
        api.stop()
        worker.stop()


def test_a_transcode_killed_mid_job_leaves_no_encoder_and_ends_with_complete_outputs(
    env, logs: Path, tmp_path: Path
) -> None:
    """Worker killed -9 mid-ffmpeg: its encoder dies with it (PDEATHSIG), the redelivery writes whole files."""
    env = {**env, "OFFLOAD_STORAGE_DIR": str(tmp_path / "storage")}
    api, worker = Api(env, logs), Worker(env, logs, domain="media", threads=1)
    try:
        upload_id = api.upload(make_clip(tmp_path / "clip.mp4", seconds=40, size="320x240", audio=False).read_bytes())
        outputs = [{"format": "webm", "height": 240, "video_kbps": 2000}, {"format": "mp4", "height": 240}]
        body = {"type": "video.transcode", "payload": {"source": {"upload_id": upload_id}, "outputs": outputs}}
        accepted: dict[str, str] = {}

        def accepts() -> bool:  # the API learns the video types from the worker's registration
            status, _, answer = api.request("POST", "/v1/jobs", body)
            accepted.update(answer if status == 202 else {})
            return status == 202

        wait_for(accepts, timeout=10, interval=0.1)
        job_id = accepted["id"]
        wait_for(lambda: 10 <= _job(api, job_id)["progress"]["percent"] <= 60, timeout=60, interval=0.02)
        assert _encoders(job_id)
        worker.kill()
        wait_for(lambda: not _encoders(job_id), timeout=5, message="ffmpeg outlived its worker")
        assert not stored(env, "acme", job_id)  # nothing half-written reached storage
        worker.start()
        wait_for(lambda: _job(api, job_id)["state"] in ("succeeded", "failed", "dead"), timeout=120)
        job = _job(api, job_id)
        assert job["state"] == "succeeded" and job["attempts"] == 2, job
        made = job["result"]["outputs"]
        assert set(stored(env, "acme", job_id)) == {o["name"] for o in made} and len(made) == 2
        for output in made:
            path = tmp_path / output["name"]
            path.write_bytes(read_stored(env, f"acme/{job_id}/{output['name']}"))
            assert path.stat().st_size == output["bytes"] and _seconds(path) > 39.5  # whole
        assert not list(Path(tempfile.gettempdir()).glob(f"offload-video-{job_id}-*"))
    finally:
        api.stop()
        worker.stop()


def _encoders(job_id: str) -> list[int]:
    """Live processes whose command line names the job's working folder (its ffmpeg)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and f"offload-video-{job_id}".encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _seconds(path: Path) -> float:
    probe = ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)]
    return float(subprocess.run(probe, capture_output=True, text=True, check=True, timeout=30).stdout)
