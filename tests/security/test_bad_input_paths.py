"""reliability-security.md §7.5, rows 32-33: client file names never become paths; planted links are not followed.

Uploads go through the real API into the real storage folder; the symlink rows run a real media
worker (in this process, over RabbitMQ and Redis) against a storage folder the test has tampered with.
"""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from offload.errors import PermanentJobError
from offload.publish import Publisher
from offload.storage import LocalStorage, make_key
from offload.testing import serving
from offload_media.settings import MediaSettings
from offload_media.worker import SPEC
from tests.support.media import photo, upload
from tests.support.security import CheckedApi

#: Row 32: names a client may send with an upload.
NAMES = {
    "row32-dotdot-slash": "../../etc/passwd",
    "row32-dotdot-backslash": "..\\..\\win.ini",
    "row32-absolute": "/etc/passwd",
    "row32-percent-encoded-dotdot": "%2e%2e%2f",
    "row32-nul": "a\x00.png",
    "row32-device-name": "CON",
    "row32-300-characters": "a" * 296 + ".png",
}


def _files(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file() or path.is_symlink()}


@pytest.fixture
def storage(app: Any) -> LocalStorage:
    found = app.extensions["offload"].storage
    assert isinstance(found, LocalStorage)
    return found


@pytest.mark.parametrize("how", ["query", "multipart"])
@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_row32_a_client_file_name_is_only_sanitised_metadata_never_a_path(
    api: CheckedApi, storage: LocalStorage, name: str, how: str
) -> None:
    data = photo(64, 48, orientation=1, gps=False)
    before = _files(storage.root)
    # The storage root's parent is the shared temporary folder, where other processes come and
    # go: only entries named after what the client sent would be this upload's doing.
    suspects = {"etc", "passwd", "win.ini", "CON", "%2e%2e%2f", name, name.split("/")[-1], name.split("\\")[-1]}
    outside_before = {entry.name for entry in storage.root.parent.iterdir()} & suspects
    if how == "query":
        response = api.post(
            "/v1/uploads",
            data=data,
            query_string={"filename": name},
            headers={"Content-Type": "application/octet-stream"},
        )
    else:
        response = api.post("/v1/uploads", data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    # The file is where the server says: <tenant>/<upload id>/source, under the tenant's root.
    stored = storage.root / "acme" / body["id"] / "source"
    assert _files(storage.root) - before == {stored}
    assert {entry.name for entry in storage.root.parent.iterdir()} & suspects == outside_before
    assert Path(os.path.realpath(stored)).is_relative_to(storage.root / "acme") and stored.read_bytes() == data
    # The name is harmless metadata: one path part, no separators, NUL or leading dot, bounded.
    kept = body["filename"]
    if kept is not None:
        assert not any(c in kept for c in "/\\\x00") and not kept.startswith(".") and len(kept) <= 200, kept
    assert str(uuid.UUID(body["id"])) == body["id"]  # the server's name, not the client's
    if name != "CON":  # (a plain name on POSIX storage; never used as one anyway)
        # Had the name reached storage, it would have been refused whole or as any part of a key.
        with pytest.raises(PermanentJobError) as refused:
            storage.path(f"acme/{body['id']}/{name}")
        assert refused.value.code == "invalid_key"
        with pytest.raises(PermanentJobError):
            make_key("acme", name, "source")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside storage that a planted link points to; holds one file to protect."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "400x300.jpg").write_bytes(b"precious")
    return folder


@pytest.mark.parametrize("plant", ["folder", "file"], ids=["row33-job-folder-is-a-link", "row33-output-is-a-link"])
def test_row33_a_link_planted_in_the_output_folder_fails_the_job_and_nothing_is_written_outside(
    api: CheckedApi,
    publisher: Publisher,
    storage: LocalStorage,
    media_settings: MediaSettings,
    outside: Path,
    plant: str,
) -> None:
    upload_id = upload(api, photo(400, 300, orientation=1, gps=False))
    response = api.submit("image.thumbnail", {"source": {"upload_id": upload_id}, "size": 400})
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["id"]
    # Before any worker takes the job, its output folder (or its output file) becomes a link outside.
    folder = storage.root / "acme" / job_id
    link = folder if plant == "folder" else folder / "400x300.jpg"
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside if plant == "folder" else outside / "400x300.jpg", link)
    try:
        with serving(SPEC, media_settings, threads=1, stop_timeout_ms=10_000):
            record = publisher.wait(job_id, timeout=30)
        assert record is not None and (record.state, record.error_code, record.attempts) == ("failed", "invalid_key", 1)
        assert [p.name for p in outside.iterdir()] == ["400x300.jpg"]  # nothing new outside,
        assert (outside / "400x300.jpg").read_bytes() == b"precious"  # and nothing overwritten
        assert link.is_symlink()  # the link itself was neither followed nor replaced
    finally:
        link.unlink()
