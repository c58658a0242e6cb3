"""deploy/prometheus checked by Prometheus' own tool: the config, the rules, and every alert's unit test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.helpers import missing

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        missing(
            "promtool",
            under_ci="`make test` installs Debian's prometheus package",
            locally="apt-get install prometheus",
        )
    return found


def _run(*args: str, cwd: Path) -> str:
    result = subprocess.run([_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_config_is_valid_once_the_api_key_file_exists(tmp_path: Path) -> None:
    copy = tmp_path / "deploy" / "prometheus"
    shutil.copytree(DEPLOY, copy)
    (tmp_path / ".offload").mkdir()
    (tmp_path / ".offload" / "prometheus-key").write_text("an-admin-key")
    assert "SUCCESS" in _run("check", "config", "prometheus.yml", cwd=copy)


def test_the_rules_are_valid() -> None:
    out = _run("check", "rules", "rules/recording.yml", "rules/alerts.yml", cwd=DEPLOY)
    assert out.count("SUCCESS") == 2


def test_every_alert_has_a_passing_unit_test() -> None:
    alerts = [
        line.split(":", 1)[1].strip()
        for line in (DEPLOY / "rules" / "alerts.yml").read_text().splitlines()
        if line.strip().startswith("- alert:")
    ]
    tested = (DEPLOY / "tests" / "alerts_test.yml").read_text()
    assert alerts and all(f"alertname: {name}" in tested for name in alerts), alerts
    assert "SUCCESS" in _run("test", "rules", "tests/alerts_test.yml", cwd=DEPLOY)


def test_the_compose_config_is_valid(tmp_path: Path) -> None:
    copy = tmp_path / "prometheus"
    shutil.copytree(DEPLOY, copy)
    key = tmp_path / "key"
    key.write_text("an-admin-key")
    config = copy / "prometheus.compose.yml"
    config.write_text(config.read_text().replace("/run/secrets/prometheus_key", str(key)))
    assert "SUCCESS" in _run("check", "config", "prometheus.compose.yml", cwd=copy)
