"""The ``offload`` command's offline sub-commands: ``schemas`` and ``cleanup``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from offload.cli import main
from offload.contracts import BUILT_IN
from offload.storage import LocalStorage, make_key


def test_schemas_writes_one_valid_document_per_job_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "--out", str(tmp_path)]) == 0
    written = sorted(p.stem for p in tmp_path.glob("*.json"))
    assert written == sorted(BUILT_IN.names)
    assert json.loads((tmp_path / "image.batch.json").read_text())["$id"].endswith("/image.batch.json")


def test_cleanup_counts_in_a_dry_run_then_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    storage = LocalStorage(tmp_path / "store")
    storage.put(make_key("acme", "old", "out.png"), [b"x" * 100])
    storage.put(make_key("acme", "new", "out.png"), [b"x" * 7])
    folder = storage.path(make_key("acme", "old", "x")).parent
    past = time.time() - 8 * 86_400
    for item in (folder / "out.png", folder):
        os.utime(item, (past, past))
    monkeypatch.setenv("OFFLOAD_STORAGE_DIR", str(storage.root))
    capsys.readouterr()
    assert main(["cleanup", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out) == {"folders": 1, "files": 1, "bytes": 100, "dry_run": True}
    assert folder.exists()
    assert main(["cleanup"]) == 0
    assert json.loads(capsys.readouterr().out)["folders"] == 1 and not folder.exists()
    assert storage.size(make_key("acme", "new", "out.png")) == 7


def test_a_retention_shorter_than_the_link_lifetime_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from offload.errors import ConfigError
    from offload.settings import load_settings

    monkeypatch.setenv("OFFLOAD_STORAGE_RETENTION", "3600")
    with pytest.raises(ConfigError, match="OFFLOAD_STORAGE_RETENTION .* shorter than OFFLOAD_LINK_TTL"):
        load_settings()
