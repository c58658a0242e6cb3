"""A Python client generated from the served OpenAPI document (openapi-python-client) drives the real API.

The document is fetched from a live ``offload-api`` process (gunicorn on loopback, over the test
vhost and Redis db), the client is generated from it into a temporary directory at test time and
imported, and its typed calls submit a job, read it until a worker has run it, list it, and read a
422 as the typed ``Error`` with its ``FieldProblem`` items. Every answer goes through the
generated models (``from_dict``), so a response that breaks its documented schema (a required
member missing, a state or literal not in its enum) fails here as it would fail a client.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import VENV_BIN
from tests.support import KEYS
from tests.system.stack import Api, Worker

pytestmark = pytest.mark.slow

#: The generated package's name (a directory of the temporary path, put first on ``sys.path``).
PACKAGE = "offload_generated_client"


def _generate(document: dict[str, Any], into: Path) -> str:
    """Generate the client package into ``into``; returns the generator's output (asserting it warned of nothing)."""
    path = into / "openapi.json"
    path.write_text(json.dumps(document))
    config = into / "generator.yaml"
    config.write_text("post_hooks: []\n")  # no formatter run: the code is imported, not read
    result = subprocess.run(
        [
            str(VENV_BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(path),
            "--output-path",
            str(into / PACKAGE),
            "--meta",
            "none",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The generator leaves out what it cannot parse, with a warning; the whole document must be usable.
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[Any]:
    """A callable that generates the client from a document and imports it; unimported afterwards."""

    def load(document: dict[str, Any]) -> ModuleType:
        _generate(document, tmp_path)
        sys.path.insert(0, str(tmp_path))
        importlib.invalidate_caches()
        return importlib.import_module(PACKAGE)

    yield load
    if str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))
    for name in [name for name in sys.modules if name == PACKAGE or name.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def test_a_generated_client_submits_gets_and_lists_jobs_on_the_live_api(env, logs: Path, generated) -> None:
    api = Api(env, logs)
    worker = Worker(env, logs, queues=("system",))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{api.port}/openapi.json", timeout=10) as response:
            package = generated(json.loads(response.read()))
        with package.AuthenticatedClient(
            base_url=f"http://127.0.0.1:{api.port}", token=KEYS["acme"], raise_on_unexpected_status=True
        ) as client:
            _submit_get_list(client)
    finally:
        worker.stop()
        api.stop()


def _submit_get_list(client: Any) -> None:
    models = _module("models")
    submit, get_job, list_jobs = (
        _module(f"api.jobs.{name}") for name in ("jobs_submit_job", "jobs_get_job", "jobs_list_jobs")
    )

    # Submit: a typed request, the discriminated variant of its job type.
    body = models.JobRequestSystemSleep(
        type_="system.sleep",
        payload=models.SleepPayload(ms=50, steps=2),
        options=models.JobOptions(priority=models.JobOptionsPriorityType0.HIGH),
    )
    answer = submit.sync_detailed(client=client, body=body, idempotency_key="generated-client-1")
    assert answer.status_code == 202 and isinstance(answer.parsed, models.JobAccepted), answer.content
    job_id = answer.parsed.id
    assert answer.parsed.state == models.JobAcceptedState.QUEUED

    # Get: the typed record, read until the worker has run the job.
    deadline = time.monotonic() + 30
    job = get_job.sync(job_id=job_id, client=client)
    while isinstance(job, models.Job) and job.state != models.JobState.SUCCEEDED and time.monotonic() < deadline:
        time.sleep(0.1)
        job = get_job.sync(job_id=job_id, client=client)
    assert isinstance(job, models.Job) and job.state == models.JobState.SUCCEEDED, job
    assert job.type_ == "system.sleep" and job.priority == models.JobPriority.HIGH
    assert job.result == {"slept_ms": 50} and job.progress.percent == 100
    assert [entry.state for entry in job.history] == [
        models.HistoryEntryState(s) for s in ("queued", "running", "succeeded")
    ]

    # List: a typed page holding it.
    page = list_jobs.sync(client=client, type_="system.sleep", limit=10)
    assert isinstance(page, models.JobPage) and [j.id for j in page.jobs] == [job_id]
    assert page.jobs[0].state == models.JobState.SUCCEEDED

    # A refusal: the typed Error, each FieldProblem with its JSON pointer and rule.
    bad = models.JobRequestSystemSleep(type_="system.sleep", payload=models.SleepPayload(ms=-1))
    refused = submit.sync_detailed(client=client, body=bad)
    assert refused.status_code == 422 and isinstance(refused.parsed, models.Error), refused.content
    assert refused.parsed.error == "validation_failed"
    assert [(p.field, p.pointer, p.rule) for p in refused.parsed.errors] == [
        ("payload.ms", "/payload/ms", "greater_than_equal")
    ]
    missing = get_job.sync_detailed(job_id="6a2e3a38-3f1e-4a3c-9f0e-3b8f3c1d2e4f", client=client)
    assert missing.status_code == 404 and isinstance(missing.parsed, models.Error)
