"""``offload new-worker``: the package it writes passes its own test, as written, against real services."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from offload.cli import main
from tests.helpers import VENV_BIN
from tests.support import AMQP_URL, REDIS_URL


def test_a_new_worker_passes_its_own_test_as_generated(tmp_path: Path, redis_client, clean_broker) -> None:
    assert main(["new-worker", "demo", "--into", str(tmp_path)]) == 0
    root = tmp_path / "offload-worker-demo"
    assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == {
        "pyproject.toml",
        "README.md",
        "Dockerfile",
        "k8s.yaml",
        "compose.override.yml",
        "src/offload_demo/__init__.py",
        "src/offload_demo/py.typed",
        "src/offload_demo/worker.py",
        "tests/test_worker.py",
    }
    assert len((root / "src/offload_demo/worker.py").read_text().splitlines()) <= 60
    run = subprocess.run(
        [str(VENV_BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=root,
        # This process's own vhost and database, as they are (not offset again for an xdist worker).
        env={
            **{k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"},
            "OFFLOAD_TEST_BROKER_URL": AMQP_URL,
            "OFFLOAD_TEST_REDIS_URL": REDIS_URL,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and "2 passed" in run.stdout, run.stdout + run.stderr

    deployment, scaled = yaml.safe_load_all((root / "k8s.yaml").read_text())
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:5] == ["dramatiq", "offload_demo.worker:setup", "--queues", "demo", "system"]
    assert scaled["kind"] == "ScaledObject" and scaled["spec"]["triggers"][0]["metadata"]["queueName"] == "demo"
    override = yaml.safe_load((root / "compose.override.yml").read_text())
    assert override["services"]["worker-demo"]["command"] == command
    assert f"CMD {command}".replace("'", '"') in (root / "Dockerfile").read_text()


@pytest.mark.parametrize("name", ["Demo", "9lives", "a-b", "x" * 40, "../etc"])
def test_a_bad_name_writes_nothing(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new-worker", name, "--into", str(tmp_path)]) == 2
    assert "not a worker name" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_an_existing_folder_is_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "offload-worker-demo").mkdir()
    assert main(["new-worker", "demo", "--into", str(tmp_path)]) == 2
    assert "exists already" in capsys.readouterr().err
