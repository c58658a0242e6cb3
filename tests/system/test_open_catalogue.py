"""The open catalogue end to end: a worker package from outside ``services/`` is picked up live.

A real ``offload-api`` process runs first; then ``dramatiq offload_text.worker:setup`` (the
example package, which nothing in ``shared/``, ``services/`` or ``deploy/`` names) starts, and
the API accepts, lists, documents and counts ``text.wordcount`` without a restart.
"""

from __future__ import annotations

import http.client
import logging
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from flask import Flask

from offload.contracts import JobContract, Payload
from offload.errors import ConfigError
from offload.jobs import JobType, WorkerSpec
from offload.status import StatusStore
from offload.status.catalogue import ContractStore
from offload_api.app import create_app
from tests.helpers import VENV_BIN, wait_for
from tests.support import KEYS, make_settings
from tests.system.stack import Api, Worker

TEXT = {"type": "text.wordcount", "payload": {"text": "to be or not to be", "top": 1}}


def _metrics(api: Api) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {KEYS['admin']}"})
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def _admin_page(app: Flask, path: str) -> str:
    client = app.test_client()
    login = client.get("/admin/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', login)
    assert token is not None
    client.post("/admin/login", data={"key": KEYS["admin"], "csrf_token": token.group(1)})
    return client.get(path).get_data(as_text=True)


class Different(Payload):
    """Another shape under the same name."""

    words: list[str]


def test_a_worker_from_outside_services_is_accepted_listed_documented_and_run_without_an_api_restart(
    env: dict[str, str], logs: Path
) -> None:
    api = Api({**env, "OFFLOAD_METRICS": "true"}, logs)
    worker: Worker | None = None
    try:
        status, _, body = api.request("POST", "/v1/jobs", TEXT)
        assert status >= 400 and body["error"] == "unknown_job_type"

        worker = Worker(env, logs, domain="text", queues=("text", "system"), threads=2)
        ready = time.monotonic()
        accepted: dict[str, str] = {}

        def accepts() -> bool:
            status, _, body = api.request("POST", "/v1/jobs", TEXT)
            if status == 202:
                accepted["id"] = body["id"]
            return status == 202

        wait_for(accepts, timeout=5, interval=0.1, message="the API did not accept text.wordcount within 5 s")
        logging.getLogger(__name__).info("accepted %.2f s after its worker was ready", time.monotonic() - ready)

        wait_for(lambda: api.request("GET", f"/v1/jobs/{accepted['id']}")[2]["state"] == "succeeded", timeout=15)
        record = api.request("GET", f"/v1/jobs/{accepted['id']}")[2]
        assert record["result"] == {"words": 6, "lines": 1, "top": [{"word": "to", "count": 2}]}

        status, _, body = api.request(
            "POST", "/v1/jobs", {"type": "text.wordcount", "payload": {"text": "x", "top": 1000}}
        )
        assert status == 422 and [item["field"] for item in body["errors"]] == ["payload.top"]
        assert "1000" not in str(body)  # the schema's rule is named; the submitted value is not echoed

        types = {item["type"]: item for item in api.request("GET", "/v1/job-types")[2]["job_types"]}
        listed = types["text.wordcount"]
        assert listed["service"] == "text" and listed["queue"] == "text" and listed["live_workers"] >= 1
        assert listed["validated_by"] == "json_schema" and listed["schema_hash"].startswith("sha256:")
        assert types["email.send"]["validated_by"] == "model"

        document = api.request("GET", "/openapi.json", who="acme")[2]
        schemas = document["components"]["schemas"]
        assert "JobRequestTextWordcount" in schemas and "TextWordcountPayload" in schemas
        assert schemas["TextWordcountPayload"]["properties"]["top"]["maximum"] == 100

        metrics = _metrics(api)
        assert 'offload_api_jobs_accepted_total{type="text.wordcount"} 1.0' in metrics
        assert 'offload_queue_consumers{queue="text"} 1.0' in metrics

        page = _admin_page(create_app(make_settings()), "/admin/job-types")
        assert (
            'id="type-text.wordcount"' in page
            and "no live worker" not in page.split('id="type-text.wordcount"')[1][:400]
        )

        other = JobContract(name="text.wordcount", queue="text", payload=Different, description="Another shape.")
        with pytest.raises(ConfigError) as refused:
            WorkerSpec(name="rival", jobs=(JobType(other, lambda ctx, payload: None),)).build(make_settings())
        message = str(refused.value)
        assert listed["schema_hash"] in message and message.count("sha256:") == 2 and "payload_schema" in message

        assert worker.process is not None
        worker.process.send_signal(signal.SIGTERM)  # to dramatiq's main process only, as Kubernetes does
        worker.process.wait(timeout=30)
        worker = None
        types = {item["type"]: item for item in api.request("GET", "/v1/job-types")[2]["job_types"]}
        assert types["text.wordcount"]["live_workers"] == 0
        assert api.request("POST", "/v1/jobs", TEXT)[0] == 202  # accepted: it waits queued for a worker

        retired = subprocess.run(
            [str(VENV_BIN / "offload"), "job-types", "retire", "text.wordcount"],
            env={**env, "PATH": str(VENV_BIN)},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert retired.returncode == 0, retired.stderr
        wait_for(lambda: api.request("POST", "/v1/jobs", TEXT)[0] >= 400, timeout=5, interval=0.1)
        assert "text.wordcount" not in {t["type"] for t in api.request("GET", "/v1/job-types")[2]["job_types"]}
    finally:
        if worker is not None:
            worker.stop()
        api.stop()


def test_built_in_types_cannot_be_retired_and_live_ones_only_by_force(redis_client) -> None:
    from offload.catalogue import retire

    store = ContractStore(StatusStore(redis_client))
    assert retire(store, "email.send") == "built_in"
    assert retire(store, "text.nonesuch") == "unknown"
