"""A media job whose worker is killed mid-job leaves exactly one complete set of outputs (issue 5)."""

from __future__ import annotations

import http.client
import io
import json
from pathlib import Path

from PIL import Image

from tests.conftest import KEYS
from tests.helpers import wait_for
from tests.media.conftest import photo
from tests.system.stack import Api, Worker


def _upload(api: Api, data: bytes) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {KEYS['acme']}", "Content-Type": "application/octet-stream"}
        connection.request("POST", "/v1/uploads", body=data, headers=headers)
        response = connection.getresponse()
        body = json.loads(response.read())
        assert response.status == 201, body
        return str(body["id"])
    finally:
        connection.close()


def _job(api: Api, job_id: str) -> dict:
    status, _, body = api.request("GET", f"/v1/jobs/{job_id}")
    assert status == 200
    return body


def test_a_resize_killed_mid_job_ends_with_one_complete_set_of_outputs(env, logs: Path, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    env = {**env, "OFFLOAD_STORAGE_DIR": str(storage)}
    api, worker = Api(env, logs), Worker(env, logs, domain="media", threads=1)
    try:
        upload_id = _upload(api, photo(4000, 3000))
        sizes = [{"width": w} for w in (3000, 2600, 2200, 1800, 1400, 1000, 800, 600, 400, 200)]
        payload = {"source": {"upload_id": upload_id}, "sizes": sizes, "formats": ["png", "webp", "jpeg"]}
        status, _, accepted = api.request("POST", "/v1/jobs", {"type": "image.resize", "payload": payload})
        assert status == 202, accepted
        job_id = accepted["id"]
        folder = storage / "acme" / job_id
        # Kill -9 once some outputs are written and most are still to come.
        wait_for(lambda: 1 <= _job(api, job_id)["progress"]["percent"] <= 50, timeout=60, interval=0.02)
        worker.kill()
        first_attempt = sorted(p.name for p in folder.iterdir())
        assert first_attempt and _job(api, job_id)["state"] == "running"
        worker.start()
        wait_for(lambda: _job(api, job_id)["state"] in ("succeeded", "failed", "dead"), timeout=120)
        job = _job(api, job_id)
        assert job["state"] == "succeeded" and job["attempts"] == 2, job
        outputs = job["result"]["outputs"]
        expected = {o["name"] for o in outputs}
        assert len(expected) == len(outputs) == 30
        on_disk = {p.name for p in folder.iterdir()}
        assert on_disk == expected, f"extra: {on_disk - expected}, missing: {expected - on_disk}"  # no .part files
        for output in outputs:
            data = (folder / output["name"]).read_bytes()
            assert len(data) == output["bytes"]
            with Image.open(io.BytesIO(data)) as image:
                image.load()  # complete, not truncated
                assert image.size == (output["width"], output["height"])
    finally:
        api.stop()
        worker.stop()


def test_a_batch_killed_mid_way_resumes_without_redoing_the_items_it_finished(env, logs: Path, tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    env = {**env, "OFFLOAD_STORAGE_DIR": str(storage)}
    api, worker = Api(env, logs), Worker(env, logs, domain="media", threads=1)
    try:
        sources = [{"upload_id": _upload(api, photo(3000, 2000, orientation=1, gps=False))} for _ in range(8)]
        operation = {"resize": {"sizes": [{"width": 2400}, {"width": 1200}], "formats": ["png", "jpeg"]}}
        status, _, accepted = api.request(
            "POST", "/v1/jobs", {"type": "image.batch", "payload": {"sources": sources, "operation": operation}}
        )
        assert status == 202, accepted
        job_id = accepted["id"]
        folder = storage / "acme" / job_id
        wait_for(lambda: 40 <= _job(api, job_id)["progress"]["percent"] <= 70, timeout=120, interval=0.02)
        worker.kill()
        first_item = {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.name.startswith("0-")}
        assert len(first_item) == 4
        worker.start()
        wait_for(lambda: _job(api, job_id)["state"] in ("succeeded", "failed", "dead"), timeout=180)
        job = _job(api, job_id)
        assert job["state"] == "succeeded" and job["attempts"] == 2, job
        assert job["result"]["succeeded"] == 8 and job["result"]["failed"] == 0
        expected = {o["name"] for item in job["result"]["items"] for o in item["result"]["outputs"]}
        assert {p.name for p in folder.iterdir()} == expected and len(expected) == 32  # no .part files left
        # The first item was recorded before the kill: its files were not written again.
        assert {name: (folder / name).stat().st_mtime_ns for name in first_item} == first_item
    finally:
        api.stop()
        worker.stop()
