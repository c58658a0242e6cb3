"""The benchmark's pure helpers around BullMQ: what ``npm ci`` must install, the scripts' JSON, the CPU table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import cpu, node


def _package(folder: Path, dependencies: dict[str, str], installed: dict[str, str]) -> None:
    (folder / "package.json").write_text(json.dumps({"dependencies": dependencies}))
    for name, version in installed.items():
        (folder / "node_modules" / name).mkdir(parents=True)
        (folder / "node_modules" / name / "package.json").write_text(json.dumps({"version": version}))


def test_nothing_is_missing_when_every_pinned_version_is_installed(tmp_path: Path) -> None:
    _package(tmp_path, {"bullmq": "6.7.6", "@scope/x": "1.0.0"}, {"bullmq": "6.7.6", "@scope/x": "1.0.0"})
    assert node.missing_packages(tmp_path) == []


def test_a_missing_package_another_version_and_an_unreadable_one_are_listed(tmp_path: Path) -> None:
    _package(tmp_path, {"bullmq": "6.7.6", "fastify": "5.12.8", "ioredis": "5.8.2"}, {"bullmq": "6.7.5"})
    (tmp_path / "node_modules" / "ioredis").mkdir()
    (tmp_path / "node_modules" / "ioredis" / "package.json").write_text("{not json")
    assert node.missing_packages(tmp_path) == ["bullmq@6.7.6", "fastify@5.12.8", "ioredis@5.8.2"]


def test_the_repositorys_lock_pins_what_package_json_asks_for() -> None:
    wanted = json.loads((node.BULLMQ / "package.json").read_text())["dependencies"]
    locked = json.loads((node.BULLMQ / "package-lock.json").read_text())["packages"]
    assert locked[""]["dependencies"] == wanted
    assert {name: locked[f"node_modules/{name}"]["version"] for name in wanted} == wanted


def test_last_json_reads_the_last_line_and_refuses_anything_else() -> None:
    assert node.last_json('warming up\n{"a": 1}\n{"jobs": 3}\n\n') == {"jobs": 3}
    with pytest.raises(ValueError):
        node.last_json("")
    with pytest.raises(ValueError):
        node.last_json("[1, 2]")
    with pytest.raises(ValueError):
        node.last_json("not json")


def test_a_cpu_line_totals_its_groups_and_bullmq_lines_leave_rabbitmq_out() -> None:
    line = cpu.CpuLine(
        "drain", "BullMQ", cpu._own("bullmq", {"worker": 200.0, "rabbitmq": 3.0, "redis": 70.0, "bench": 5.0})
    )
    assert line.us == {"worker": 200.0, "redis": 70.0}
    assert line.as_dict() == {
        "measure": "drain",
        "system": "BullMQ",
        "worker_us": 200.0,
        "redis_us": 70.0,
        "total_us": 270.0,
    }
    rendered = cpu.render([line, cpu.CpuLine("drain", "ours", {"worker": 500.0, "rabbitmq": 100.0, "redis": 200.0})])
    assert "RabbitMQ" in rendered and "—" in rendered and "800" in rendered
    assert cpu.render([]) == ""
