"""Pause and resume (issue 10): pausing ``media`` while 500 jobs are queued starts none of them
(across a worker restart too), loses none, and resuming runs all 500 once."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import redis
from PIL import Image

from tests.helpers import wait_for
from tests.support import REDIS_URL
from tests.system.stack import Api, Worker

JOBS = 500
PAUSED_S = 30 if int(os.environ.get("OFFLOAD_CHAOS_SCALE", "1")) >= 10 else 5


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_paused_queue_starts_nothing_loses_nothing_and_runs_everything_once_resumed(
    env: dict[str, str], logs: Path, tmp_path: Path
) -> None:
    env = {**env, "OFFLOAD_STORAGE_DIR": str(tmp_path / "storage")}
    api = Api(env, logs)
    worker = Worker(env, logs, domain="media", threads=4)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        status, _, paused = api.request("POST", "/v1/queues/media/pause", who="admin")
        assert status == 200 and paused["paused"] is True and paused["kind"] == "queue"
        assert api.request("POST", "/v1/queues/media/pause", who="acme")[0] == 403
        assert api.request("POST", "/v1/queues/nosuch/pause", who="admin")[0] == 404
        upload = api.upload(_png())
        job = {"type": "image.thumbnail", "payload": {"source": {"upload_id": upload}, "size": 32}}
        ids = []
        for _ in range(JOBS):
            status, _, accepted = api.request("POST", "/v1/jobs", job)
            assert status == 202 and accepted["queue_paused"] is True, accepted
            ids.append(accepted["id"])

        def parked() -> int:
            _, _, listed = api.request("GET", "/v1/queues", who="admin")
            return next(q["parked"] for q in listed["queues"] if q["name"] == "media")

        wait_for(lambda: parked() == JOBS, timeout=60, interval=0.5)  # taken off the broker, not started
        worker.stop()
        worker.start()  # the pause lives in Redis: a new worker honours it too
        deadline = time.monotonic() + PAUSED_S
        while time.monotonic() < deadline:
            states = {client.hget(f"offload:job:{job_id}", "state") for job_id in ids}
            assert states == {"queued"}, states
            time.sleep(1)
        status, _, resumed = api.request("POST", "/v1/queues/media/resume", who="admin")
        assert status == 200 and resumed["paused"] is False

        def all_succeeded() -> bool:
            return all(client.hget(f"offload:job:{job_id}", "state") == "succeeded" for job_id in ids)

        wait_for(all_succeeded, timeout=120, interval=0.5)
        assert {int(client.hget(f"offload:job:{job_id}", "attempts") or 0) for job_id in ids} == {1}
        assert parked() == 0
        status, _, after = api.request("POST", "/v1/jobs", job)
        assert status == 202 and "queue_paused" not in after
    finally:
        api.stop()
        worker.stop()
