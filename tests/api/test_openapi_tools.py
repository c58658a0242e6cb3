"""The served OpenAPI document, checked by the linters clients' tooling runs: Redocly CLI and Spectral.

Both must report no error and no warning on ``/openapi.json`` (Redocly's ``recommended`` ruleset,
Spectral's ``spectral:oas``), with the configs and pinned versions in ``tools/openapi-lint/``.
The test installs them there itself with ``npm ci`` on first use, and again when the lock changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT, missing
from tests.support import Api

TOOLS = ROOT / "tools" / "openapi-lint"
#: Written into node_modules after a successful ``npm ci``: the lock it installed.
STAMP = TOOLS / "node_modules" / ".offload-lock-sha256"
#: Neither tool may call home or look for updates from a test.
QUIET = {"REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true", "NO_COLOR": "1"}


def _missing(what: str) -> None:
    missing(
        what,
        under_ci="the machine's Node.js 20 and npm run the OpenAPI linters",
        locally="Node.js 20 and npm run the OpenAPI linters",
    )


def _installed() -> Path:
    """``tools/openapi-lint/node_modules/.bin``, installed from the lock by ``npm ci`` unless it already is."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        _missing("node or npm")
    lock = hashlib.sha256((TOOLS / "package-lock.json").read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text() != lock:
        result = subprocess.run(
            [str(npm), "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=TOOLS,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        STAMP.write_text(lock)
    return TOOLS / "node_modules" / ".bin"


def _lint(tool: str, *args: str, document: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(_installed() / tool), "lint", *args, str(document)],
        cwd=TOOLS,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **QUIET},
    )


@pytest.fixture
def served(api: Api, tmp_path: Path) -> Path:
    """The document as the API serves it, in a file."""
    response = api.get("/openapi.json")
    assert response.status_code == 200
    path = tmp_path / "openapi.json"
    path.write_text(json.dumps(response.get_json()))
    return path


@pytest.mark.timeout(900)
def test_redocly_recommended_reports_no_error_and_no_warning(served: Path) -> None:
    result = _lint("redocly", "--config", "redocly.yaml", "--format", "json", document=served)
    report = json.loads(result.stdout)
    problems = [f"{p['severity']} {p['ruleId']}: {p['message']} at {p['location']}" for p in report["problems"]]
    assert problems == [] and report["totals"]["errors"] == report["totals"]["warnings"] == 0
    assert result.returncode == 0, result.stderr


@pytest.mark.timeout(900)
def test_spectral_oas_reports_no_error_and_no_warning(served: Path, tmp_path: Path) -> None:
    output = tmp_path / "spectral.json"
    result = _lint(
        "spectral", "--ruleset", ".spectral.yaml", "--format", "json", "--output", str(output), document=served
    )
    found = [p for p in json.loads(output.read_text()) if p["severity"] <= 1]  # 0 error, 1 warning (2 info, 3 hint)
    problems = [f"{p['severity']} {p['code']}: {p['message']} at {'.'.join(map(str, p['path']))}" for p in found]
    assert problems == [], problems
    assert result.returncode == 0, result.stdout + result.stderr
