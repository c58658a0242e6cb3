"""A media job whose worker is killed mid-job leaves exactly one complete set of outputs (issue 5)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from tests.helpers import wait_for
from tests.s3_server import read_stored, stored
from tests.support.media import photo
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
