"""The suite on the S3 backend, as processes on different hosts would run it: nothing shared but the bucket.

The API and the media and reports workers are real processes whose storage is a bucket of moto's
S3 server (tests/s3_server.py) and whose ``OFFLOAD_STORAGE_DIR`` is left empty; an upload goes into
an image job, a report is built, and both outputs come back through signed links that the API
streams from the bucket. ``make test-s3`` runs the whole media and reports suites this way.
"""

from __future__ import annotations

import http.client
import io
from pathlib import Path

from PIL import Image

from tests.s3_server import s3_server, s3_settings
from tests.support.media import photo
from tests.system.stack import Api, Worker


def _get(api: Api, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _finished(api: Api, job: dict) -> dict:
    events = list(api.events(job["id"], timeout=60))
    return events[-1]["data"]["job"]


def test_a_resize_and_a_report_store_in_the_bucket_and_download_through_signed_links(
    env, logs: Path, tmp_path: Path
) -> None:
    bucket = s3_server().new_bucket()
    disk = tmp_path / "storage"
    env = {**env, **{f"OFFLOAD_{k.upper()}": str(v) for k, v in s3_settings(bucket).items()}}
    env["OFFLOAD_STORAGE_DIR"] = str(disk)
    api = Api(env, logs)
    media, reports = Worker(env, logs, domain="media", threads=2), Worker(env, logs, domain="reports", threads=2)
    try:
        # Given an upload and an image job on it
        upload_id = api.upload(photo(1200, 800))
        payload = {"source": {"upload_id": upload_id}, "sizes": [{"width": 300}], "formats": ["webp"]}
        status, _, resize = api.request("POST", "/v1/jobs", {"type": "image.resize", "payload": payload})
        assert status == 202, resize
        # and a report job
        columns = [{"name": "name"}, {"name": "qty", "type": "integer"}]
        rows = [{"name": f"item {i}", "qty": i} for i in range(500)]
        report = {"title": "Stock", "columns": columns, "rows": rows, "output": "csv"}
        status, _, built = api.request("POST", "/v1/jobs", {"type": "report.build", "payload": report})
        assert status == 202, built
        # When both finish
        resized, reported = _finished(api, resize), _finished(api, built)
        assert resized["state"] == "succeeded" and reported["state"] == "succeeded", (resized, reported)
        # Then each signed link streams the output from the bucket, as an attachment
        output = resized["result"]["outputs"][0]
        status, headers, data = _get(api, output["url"])
        assert status == 200 and len(data) == output["bytes"]
        assert (
            headers["Content-Disposition"].startswith("attachment") and headers["X-Content-Type-Options"] == "nosniff"
        )
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "WEBP" and image.width == 300
        status, _, csv = _get(api, reported["result"]["url"])
        assert status == 200 and csv.decode().splitlines()[-1] == '"item 499",499'
        # and a tampered link is refused
        assert _get(api, reported["result"]["url"].replace("sig=", "sig=x"))[0] == 403
        # Everything lives in the bucket, nothing on the local disk
        listed = s3_server().client().list_objects_v2(Bucket=bucket)["Contents"]
        names = {item["Key"].split("/", 1)[1] for item in listed}
        assert names == {
            f"{upload_id}/source",
            f"{resize['id']}/{output['name']}",
            f"{built['id']}/stock.csv",
        }
        assert not disk.exists()
    finally:
        api.stop()
        media.stop()
        reports.stop()
