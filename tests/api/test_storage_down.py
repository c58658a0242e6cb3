"""An unreachable object store is a 503 ``storage_unavailable`` with Retry-After, never a 404 or a 500."""

from __future__ import annotations

from flask import Flask

from offload.publish import Publisher
from offload.settings import Settings
from offload.signing import LinkSigner
from offload_api.app import create_app
from tests.api.test_files import JPEG
from tests.helpers import free_port
from tests.s3_server import ACCESS_KEY, SECRET_KEY
from tests.support import Api


def test_uploads_and_downloads_answer_503_while_the_bucket_is_unreachable(
    settings: Settings, publisher: Publisher
) -> None:
    down = {
        "storage_backend": "s3",
        "s3_bucket": "offload-test",
        "s3_endpoint_url": f"http://127.0.0.1:{free_port()}",  # nothing listens there
        "s3_access_key_id": ACCESS_KEY,
        "s3_secret_access_key": SECRET_KEY,
    }
    app: Flask = create_app(Settings(**{**settings.model_dump(), **down}), publisher=publisher)
    api = Api(app.test_client())
    uploaded = api.post("/v1/uploads", data=JPEG, headers={"Content-Type": "application/octet-stream"})
    assert uploaded.status_code == 503 and uploaded.get_json()["error"] == "storage_unavailable"
    assert uploaded.headers["Retry-After"]
    link = LinkSigner(settings.signing_key.get_secret_value()).path("acme/job1/out.png")
    downloaded = api.anonymous_get(link)
    assert downloaded.status_code == 503 and downloaded.get_json()["error"] == "storage_unavailable"
