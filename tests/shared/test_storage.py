"""Storage, on both backends: atomic writes, safe keys, partials discarded, folders removed whole.

The protocol tests run on LocalStorage and on S3Storage against a real S3-compatible server
(moto's, tests/s3_server.py); the tests of links planted on disk are LocalStorage's own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from offload.errors import FileTooLarge, InvalidSignature, LinkExpired, PermanentJobError, StorageUnavailable
from offload.settings import Settings
from offload.signing import LinkSigner
from offload.storage import LocalStorage, Storage, build_storage, make_key
from offload.storage.s3 import S3Storage
from tests.helpers import free_port
from tests.s3_server import s3_server, s3_settings

MIB = 1024 * 1024


@pytest.fixture
def local(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store")


@pytest.fixture
def s3() -> S3Storage:
    """An S3Storage on a fresh bucket, with S3's smallest part size so that multipart is cheap to reach."""
    storage = build_storage(Settings(**s3_settings(s3_server().new_bucket())))
    assert isinstance(storage, S3Storage)
    storage.part_size = 5 * MIB
    return storage


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest) -> Storage:
    return request.getfixturevalue(request.param)


def names(storage: Storage, tenant: str, owner: str) -> list[str]:
    """What a reader of the backend sees in one folder: files, temporaries and unfinished uploads."""
    if isinstance(storage, LocalStorage):
        folder = storage.root / tenant / owner
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    assert isinstance(storage, S3Storage)
    prefix = f"{tenant}/{owner}/"
    objects = storage.client.list_objects_v2(Bucket=storage.bucket, Prefix=prefix).get("Contents", [])
    uploads = storage.client.list_multipart_uploads(Bucket=storage.bucket, Prefix=prefix).get("Uploads", [])
    return sorted([o["Key"][len(prefix) :] for o in objects] + [f"upload:{u['Key']}" for u in uploads])


def plant_partial(storage: Storage, tenant: str, owner: str, name: str) -> None:
    """What a write killed half-way leaves: a ``.part`` file, or an unfinished multipart upload."""
    if isinstance(storage, LocalStorage):
        folder = storage.root / tenant / owner
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f".{name}.1a2b3c.part").write_bytes(b"half")
    else:
        assert isinstance(storage, S3Storage)
        storage.client.create_multipart_upload(Bucket=storage.bucket, Key=f"{tenant}/{owner}/{name}")


def test_a_file_is_written_whole_and_read_back(storage: Storage) -> None:
    key = make_key("acme", "job1", "256.webp")
    stored = storage.put(key, [b"abc", b"def"])
    assert stored.size == 6 and storage.size(key) == 6
    with storage.open(key) as handle:
        assert handle.read() == b"abcdef"
    assert names(storage, "acme", "job1") == ["256.webp"]  # no temporary left


def test_a_write_over_the_limit_leaves_nothing_behind(storage: Storage) -> None:
    key = make_key("acme", "job1", "big.bin")
    with pytest.raises(FileTooLarge):
        storage.put(key, [b"x" * 600, b"x" * 600], max_bytes=1000)
    with pytest.raises(FileTooLarge), storage.writer(key, max_bytes=1000) as handle:
        handle.write(b"x" * 1001)
    assert storage.size(key) is None and names(storage, "acme", "job1") == []


def test_a_large_file_streams_in_parts_and_a_limit_mid_way_aborts_the_upload(storage: Storage) -> None:
    key = make_key("acme", "job1", "big.bin")
    block = bytes(range(256)) * 4096  # 1 MiB
    assert storage.put(key, [block] * 12).size == 12 * MIB  # three parts on S3
    with storage.open(key) as handle:
        assert handle.read(MIB) == block and len(handle.read()) == 11 * MIB
    with pytest.raises(FileTooLarge):
        storage.put(make_key("acme", "job1", "over.bin"), [block] * 12, max_bytes=11 * MIB)
    assert names(storage, "acme", "job1") == ["big.bin"]  # no object, no unfinished upload


def test_a_writer_may_seek_back_and_shows_nothing_until_its_block_ends(storage: Storage) -> None:
    key = make_key("acme", "job1", "report.xlsx")
    with storage.writer(key, max_bytes=100) as handle:
        handle.write(b"....body")
        handle.seek(0)
        handle.write(b"head")
        assert storage.size(key) is None
    assert handle.size == 8 and storage.size(key) == 8
    with storage.open(key) as reader:
        assert reader.read() == b"headbody"


def test_a_failed_rewrite_keeps_the_previous_file_whole(storage: Storage) -> None:
    key = make_key("acme", "job1", "out.png")
    storage.put(key, [b"first"])

    def broken():
        yield b"second-half"
        raise OSError("disk full")

    with pytest.raises(OSError):
        storage.put(key, broken())
    with pytest.raises(OSError), storage.writer(key) as handle:
        handle.write(b"second")
        raise OSError("the producer crashed")
    with storage.open(key) as reader:
        assert reader.read() == b"first"


def test_a_missing_file_is_not_found(storage: Storage) -> None:
    key = make_key("acme", "job1", "nothing.png")
    assert storage.size(key) is None and storage.size("acme/../x") is None
    with pytest.raises(FileNotFoundError):
        storage.open(key)
    with pytest.raises(PermanentJobError):
        storage.put("acme/x/../../y", [b"x"])


def test_half_written_files_of_a_killed_attempt_are_discarded_and_finished_ones_kept(storage: Storage) -> None:
    storage.put(make_key("acme", "job1", "256.webp"), [b"done"])
    plant_partial(storage, "acme", "job1", "512.webp")
    plant_partial(storage, "acme", "job1", "1024.jpg")
    plant_partial(storage, "acme", "job10", "1024.jpg")  # another job whose id starts the same
    assert storage.discard_partials("acme", "job1") == 2
    assert names(storage, "acme", "job1") == ["256.webp"]
    assert storage.discard_partials("acme", "job2") == 0  # no folder yet: nothing to do
    assert storage.discard_partials("acme", "job10") == 1


def test_deleting_one_jobs_files_leaves_the_others(storage: Storage) -> None:
    for owner in ("job1", "job10", "job2"):
        storage.put(make_key("acme", owner, "a.png"), [b"x"])
    storage.put(make_key("acme", "job1", "b.png"), [b"y"])
    assert storage.delete_prefix("acme", "job1") == 2
    assert names(storage, "acme", "job1") == [] and storage.size(make_key("acme", "job10", "a.png")) == 1
    assert storage.delete_prefix("acme", "job1") == 0


def test_retention_by_last_write_removes_whole_folders_on_either_backend(storage: Storage) -> None:
    # Given a job written before the cutoff, and one that was written before it and again after
    storage.put(make_key("acme", "old-job", "a.png"), [b"x" * 10])
    storage.put(make_key("acme", "old-job", "b.png"), [b"y" * 5])
    storage.put(make_key("acme", "touched", "a.png"), [b"x" * 10])
    time.sleep(1.05 - time.time() % 1)  # S3 keeps whole seconds: step past one
    cutoff = float(int(time.time()))
    storage.put(make_key("acme", "touched", "b.png"), [b"y" * 5])
    storage.put(make_key("acme", "new-job", "a.png"), [b"z"])
    # When the sweep runs, first as a dry run
    counted = storage.remove_older_than(cutoff, dry_run=True)
    assert (counted.folders, counted.files, counted.bytes) == (1, 2, 15)
    assert storage.size(make_key("acme", "old-job", "a.png")) == 10
    # Then only the old job's files go, and the touched set stays whole
    assert storage.remove_older_than(cutoff) == counted
    assert names(storage, "acme", "old-job") == [] and names(storage, "acme", "touched") == ["a.png", "b.png"]
    assert storage.size(make_key("acme", "new-job", "a.png")) == 1


def test_s3_retention_leaves_objects_it_did_not_write_and_aborts_old_uploads(s3: S3Storage) -> None:
    s3.client.put_object(Bucket=s3.bucket, Key="README.txt", Body=b"someone else's")
    s3.client.put_object(Bucket=s3.bucket, Key="acme/job1/a.png", Body=b"ours")
    s3.client.put_object(Bucket=s3.bucket, Key="acme/job1/deeper/file", Body=b"not ours")  # sorts between
    s3.client.put_object(Bucket=s3.bucket, Key="acme/job1/z.png", Body=b"ours")
    plant_partial(s3, "acme", "job2", "out.png")
    swept = s3.remove_older_than(time.time() + 60)
    assert swept.folders == 0 and names(s3, "acme", "job1") == ["a.png", "deeper/file", "z.png"]
    assert s3.client.get_object(Bucket=s3.bucket, Key="README.txt")["Body"].read() == b"someone else's"
    assert names(s3, "acme", "job2") == []


def test_s3_keys_live_under_the_configured_prefix(s3: S3Storage) -> None:
    prefixed = S3Storage(s3.client, s3.bucket, prefix="offload/")
    prefixed.put(make_key("acme", "job1", "a.png"), [b"x"])
    assert [o["Key"] for o in s3.client.list_objects_v2(Bucket=s3.bucket)["Contents"]] == ["offload/acme/job1/a.png"]
    assert prefixed.remove_older_than(time.time() + 60).files == 1


@pytest.fixture
def unreachable() -> Iterator[S3Storage]:
    settings = Settings(
        **{**s3_settings(), "s3_endpoint_url": f"http://127.0.0.1:{free_port()}", "s3_secret_access_key": "s" * 40}
    )
    storage = build_storage(settings)
    assert isinstance(storage, S3Storage)
    yield storage


def test_an_unreachable_server_is_a_dependency_error_that_names_no_endpoint_or_secret(unreachable: S3Storage) -> None:
    key = make_key("acme", "job1", "a.png")
    for attempt in (
        lambda: unreachable.put(key, [b"x"]),
        lambda: unreachable.open(key),
        lambda: unreachable.size(key),
        lambda: unreachable.delete_prefix("acme", "job1"),
        lambda: unreachable.remove_older_than(0),
    ):
        with pytest.raises(StorageUnavailable) as caught:
            attempt()
        assert caught.value.code == "storage_unavailable"
        assert "127.0.0.1" not in str(caught.value) and "sss" not in str(caught.value)
        assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_missing_bucket_is_a_dependency_error(s3: S3Storage) -> None:
    gone = S3Storage(s3.client, "no-such-bucket-here")
    with pytest.raises(StorageUnavailable, match=r"\(NoSuchBucket\)"):
        gone.put(make_key("acme", "job1", "a.png"), [b"x"])


def test_the_s3_backend_needs_a_bucket_and_both_halves_of_a_key_pair() -> None:
    from offload.errors import ConfigError
    from offload.settings import load_settings

    with pytest.raises(ConfigError, match="OFFLOAD_S3_BUCKET is empty"):
        load_settings(storage_backend="s3")
    with pytest.raises(ConfigError, match="OFFLOAD_S3_SECRET_ACCESS_KEY"):
        load_settings(storage_backend="s3", s3_bucket="files", s3_access_key_id="AKIAEXAMPLE")
    with pytest.raises(ConfigError, match="OFFLOAD_S3_ENDPOINT_URL"):
        load_settings(storage_backend="s3", s3_bucket="files", s3_endpoint_url="http://user:pass@minio:9000")


@pytest.mark.parametrize(
    "parts",
    [
        ("..", "x", "y"),
        ("acme", "..", "y"),
        ("acme", "x", "../../etc/passwd"),
        ("acme", "x", "a\x00.png"),
        ("acme", "x", ".hidden"),
        ("a/b", "x", "y"),
        ("acme", "x", "a" * 300),
        ("acme", "x", "%2e%2e"),
    ],
)
def test_unsafe_key_parts_are_refused(parts: tuple[str, str, str]) -> None:
    with pytest.raises(PermanentJobError):
        make_key(*parts)


def test_a_symlink_planted_in_the_way_is_not_followed(local: LocalStorage, tmp_path: Path) -> None:
    storage = local
    outside = tmp_path / "outside"
    outside.mkdir()
    key = make_key("acme", "job2", "out.png")
    folder = storage.path(key).parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, folder)  # the job's folder is a link to somewhere else
    with pytest.raises(PermanentJobError):
        storage.put(key, [b"x"])
    assert list(outside.iterdir()) == []
    os.unlink(folder)
    folder.mkdir()
    os.symlink(outside / "target", storage.path(key))  # the file itself is a link
    with pytest.raises((PermanentJobError, FileNotFoundError)):
        storage.open(key)


def test_links_are_signed_expire_and_cannot_be_altered() -> None:
    signer = LinkSigner("s" * 40)
    key = "acme/job1/256.webp"
    expires, signature = signer.sign(key, ttl=60)
    signer.verify(key, str(expires), signature)
    for altered in (
        ("acme/job2/256.webp", str(expires), signature),
        (key, str(expires + 1), signature),
        (
            key,
            str(expires),
            ("A" if signature[0] != "A" else "B") + signature[1:],
        ),  # not the last char: its low bits are base64 padding
        (key, "soon", signature),
        ("globex/job1/256.webp", str(expires), signature),
    ):
        with pytest.raises(InvalidSignature):
            signer.verify(*altered)
    with pytest.raises(LinkExpired):
        signer.verify(key, str(expires), signature, now=expires + 1)
    with pytest.raises(InvalidSignature):
        LinkSigner("t" * 40).verify(key, str(expires), signature)


def _age(path: Path, seconds: float) -> None:
    """Set the modification time of ``path`` and everything in it ``seconds`` in the past."""
    when = path.stat().st_mtime - seconds
    for item in [*path.iterdir(), path]:
        os.utime(item, (when, when), follow_symlinks=False)


def test_local_retention_removes_whole_folders_past_the_cutoff_and_keeps_the_rest(local: LocalStorage) -> None:
    storage = local
    for owner in ("old-job", "new-job", "old-but-touched"):
        storage.put(make_key("acme", owner, "a.png"), [b"x" * 10])
        storage.put(make_key("acme", owner, "b.png"), [b"y" * 5])
    _age(storage.path(make_key("acme", "old-job", "x")).parent, 3 * 86_400)
    touched = storage.path(make_key("acme", "old-but-touched", "x")).parent
    _age(touched, 3 * 86_400)
    os.utime(touched / "b.png")  # a retry wrote one output again just now
    cutoff = storage.path(make_key("acme", "new-job", "x")).parent.stat().st_mtime - 86_400

    counted = storage.remove_older_than(cutoff, dry_run=True)
    assert (counted.folders, counted.files, counted.bytes) == (1, 2, 15)
    assert storage.size(make_key("acme", "old-job", "a.png")) == 10  # a dry run removes nothing

    removed = storage.remove_older_than(cutoff)
    assert removed == counted
    assert not storage.path(make_key("acme", "old-job", "x")).parent.exists()
    assert storage.size(make_key("acme", "new-job", "a.png")) == 10
    assert storage.size(make_key("acme", "old-but-touched", "a.png")) == 10  # the set stays whole


def test_retention_never_follows_a_planted_link(local: LocalStorage, tmp_path: Path) -> None:
    storage = local
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    folder = storage.path(make_key("acme", "job1", "x")).parent
    folder.mkdir(parents=True)
    (folder / "link").symlink_to(outside, target_is_directory=True)
    (storage.root / "globex").symlink_to(outside, target_is_directory=True)  # a linked tenant folder
    _age(folder, 3 * 86_400)
    os.utime(outside, (0, 0))
    removed = storage.remove_older_than(folder.stat().st_mtime + 60)
    assert removed.folders == 1 and not folder.exists()
    assert (outside / "precious.txt").read_text() == "keep me"
