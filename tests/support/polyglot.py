"""Publishers of Offload jobs in other languages, written from ``docs/wire-format.md`` alone.

``tests/wire/node/publish.mjs`` (Node.js, amqplib from its lock file) and ``tests/wire/go/publish.go``
(Go, amqp091-go from Debian's ``golang-github-rabbitmq-amqp091-go-dev``, built in GOPATH mode with no
download) take a list of jobs as JSON and publish each as the doc says, with publisher confirms,
printing the job ids. The tests run them as a service in that language would run, against broker
users of their own, and check that what they publish is tracked, limited and authorised exactly as
an HTTP submission is. Without Node.js or Go the tests skip (and fail under ``CI``): ``make test``
installs both (``scripts/ensure-services.sh``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench import node
from tests.helpers import ROOT, missing

WIRE = ROOT / "tests" / "wire"
NODE_PUBLISHER = WIRE / "node"
GO_PUBLISHER = WIRE / "go" / "publish.go"
#: Where Debian's Go packages keep their sources (``/usr/share/gocode/src/github.com/rabbitmq/amqp091-go``).
DEBIAN_GOPATH = "/usr/share/gocode"
LANGUAGES = ("node", "go")


def _missing(what: str) -> None:
    missing(what, under_ci="`make test` installs it (scripts/ensure-services.sh)", locally="make test installs it")


def publisher_command(language: str, build_dir: Path) -> list[str]:
    """The command that runs the ``language`` publisher (installed or built first), or skip/fail."""
    if language == "node":
        if shutil.which("node") is None:
            _missing("Node.js")
        node.ensure_installed(NODE_PUBLISHER)
        return ["node", str(NODE_PUBLISHER / "publish.mjs")]
    if shutil.which("go") is None or not Path(DEBIAN_GOPATH, "src/github.com/rabbitmq/amqp091-go").is_dir():
        _missing("Go with amqp091-go (Debian: golang-go golang-github-rabbitmq-amqp091-go-dev)")
    binary = build_dir / "publish"
    if not binary.exists():
        env = {**os.environ, "GO111MODULE": "off", "GOPATH": DEBIAN_GOPATH, "GOCACHE": str(build_dir / "cache")}
        done = subprocess.run(
            ["go", "build", "-o", str(binary), str(GO_PUBLISHER)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert done.returncode == 0, f"go build failed: {done.stderr[-2000:]}"
    return [str(binary)]


def publish(command: list[str], url: str, jobs: list[dict[str, Any]]) -> list[str]:
    """Publish ``jobs`` with the publisher ``command`` as the broker user of ``url``; their job ids.

    Raises:
        AssertionError: the publisher failed (its error output is in the message).
    """
    with tempfile.NamedTemporaryFile("w", suffix=".json") as spec:
        json.dump(jobs, spec)
        spec.flush()
        done = subprocess.run(
            [*command, url, spec.name], capture_output=True, text=True, check=False, timeout=60, cwd=WIRE
        )
    assert done.returncode == 0, f"{command[0]} publisher failed ({done.returncode}): {done.stderr[-2000:]}"
    ids = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(ids, list) and len(ids) == len(jobs)
    return [str(job_id) for job_id in ids]
