"""Local storage: atomic writes, safe keys, no escaping the tenant's folder, no following links."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from offload.errors import PermanentJobError
from offload.signing import InvalidSignature, LinkExpired, LinkSigner
from offload.storage import FileTooLarge, LocalStorage, make_key


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store")


def test_a_file_is_written_whole_and_read_back(storage: LocalStorage) -> None:
    key = make_key("acme", "job1", "256.webp")
    stored = storage.put(key, [b"abc", b"def"])
    assert stored.size == 6 and storage.size(key) == 6
    with storage.open(key) as handle:
        assert handle.read() == b"abcdef"
    assert [p.name for p in storage.path(key).parent.iterdir()] == ["256.webp"]  # no temporary left


def test_a_write_over_the_limit_leaves_nothing_behind(storage: LocalStorage) -> None:
    key = make_key("acme", "job1", "big.bin")
    with pytest.raises(FileTooLarge):
        storage.put(key, [b"x" * 600, b"x" * 600], max_bytes=1000)
    assert storage.size(key) is None and list(storage.path(key).parent.iterdir()) == []


def test_a_failed_rewrite_keeps_the_previous_file_whole(storage: LocalStorage) -> None:
    key = make_key("acme", "job1", "out.png")
    storage.put(key, [b"first"])

    def broken():
        yield b"second-half"
        raise OSError("disk full")

    with pytest.raises(OSError):
        storage.put(key, broken())
    with storage.open(key) as handle:
        assert handle.read() == b"first"


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


def test_a_symlink_planted_in_the_way_is_not_followed(storage: LocalStorage, tmp_path: Path) -> None:
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


def test_half_written_files_of_a_killed_attempt_are_discarded_and_finished_ones_kept(storage: LocalStorage) -> None:
    key = make_key("acme", "job1", "256.webp")
    storage.put(key, [b"done"])
    folder = storage.path(key).parent
    (folder / ".512.webp.1a2b3c.part").write_bytes(b"half")  # what a SIGKILL mid-write leaves
    (folder / ".1024.jpg.4d5e6f.part").write_bytes(b"half")
    assert storage.discard_partials("acme", "job1") == 2
    assert sorted(p.name for p in folder.iterdir()) == ["256.webp"]
    assert storage.discard_partials("acme", "job2") == 0  # no folder yet: nothing to do


def _age(path: Path, seconds: float) -> None:
    """Set the modification time of ``path`` and everything in it ``seconds`` in the past."""
    when = path.stat().st_mtime - seconds
    for item in [*path.iterdir(), path]:
        os.utime(item, (when, when), follow_symlinks=False)


def test_retention_removes_whole_folders_past_the_cutoff_and_keeps_the_rest(storage: LocalStorage) -> None:
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


def test_retention_never_follows_a_planted_link(storage: LocalStorage, tmp_path: Path) -> None:
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
