"""Worker metrics: Dramatiq's and Offload's, from several worker processes, add up to the true counts (issue 7)."""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from offload.publish import Publisher
from tests.helpers import free_port, wait_for
from tests.support import KEYS
from tests.system.stack import Api, Worker


def _scrape(port: int, key: str | None = None) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _total(samples: dict, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(value for (sample, found), value in samples.items() if sample == name and wanted <= found)


def test_two_worker_processes_count_every_outcome_once(env, logs: Path, tmp_path: Path, publisher: Publisher) -> None:
    port = free_port()
    env = {
        **env,
        "OFFLOAD_METRICS": "true",
        "dramatiq_prom_host": "127.0.0.1",
        "dramatiq_prom_port": str(port),
        "dramatiq_prom_db": str(tmp_path / "metrics"),
    }
    worker = Worker(env, logs, domain="email", threads=2, processes=2)
    try:
        jobs = [publisher.publish("system.noop", {}, tenant="acme").job_id for _ in range(20)]
        jobs += [publisher.publish("system.fail", {"permanent": True}, tenant="acme").job_id for _ in range(3)]
        jobs += [
            publisher.publish("system.fail", {"succeed_on_attempt": 2}, tenant="acme", max_retries=2).job_id
            for _ in range(2)
        ]
        wait_for(lambda: all(publisher.get(j).state.terminal for j in jobs), timeout=60)
        # the per-job updates reach the files at the next flush of the process's buffer (0.5 s)
        wait_for(lambda: _total(_scrape(port), "dramatiq_messages_total", actor_name="system.fail") >= 7, timeout=5)
        samples = _scrape(port)
        assert _total(samples, "offload_jobs_total", type="system.noop", state="succeeded") == 20
        assert _total(samples, "offload_jobs_total", type="system.fail", state="failed") == 3
        assert _total(samples, "offload_jobs_total", type="system.fail", state="retrying") == 2
        assert _total(samples, "offload_jobs_total", type="system.fail", state="succeeded") == 2
        assert _total(samples, "offload_job_wait_seconds_count", queue="system", type="system.noop") == 20
        assert _total(samples, "dramatiq_messages_total", actor_name="system.noop") == 20
        assert _total(samples, "dramatiq_message_duration_milliseconds_count", actor_name="system.noop") == 20
        labels = {value for (_, found) in samples for _, value in found}
        assert not any("acme" in value or value in jobs for value in labels)  # no tenant or job id as a label
    finally:
        worker.stop()


def test_three_api_workers_add_up_to_the_true_counts_and_metrics_need_the_admin_key(env, logs: Path) -> None:
    api = Api({**env, "OFFLOAD_METRICS": "true"}, logs, workers=3)
    try:
        bodies = [{"type": "system.noop"}] * 60 + [{"type": "system.sleep", "payload": {"ms": "x"}}] * 7
        bodies += [{"type": "no.such"}] * 5

        def submit(body: dict) -> int:
            return api.request("POST", "/v1/jobs", body)[0]

        with ThreadPoolExecutor(12) as pool:  # concurrent, so the requests spread over the workers
            statuses = list(pool.map(submit, bodies))
        assert statuses.count(202) == 60 and statuses.count(422) == 12
        status, _, _ = api.request("GET", "/metrics", who="acme")
        assert status == 403  # a client key cannot read them; no key at all gets 401
        for _ in range(3):  # whichever worker answers, it reports every worker's counts
            samples = _scrape(api.port, KEYS["admin"])
            assert _total(samples, "offload_api_jobs_accepted_total", type="system.noop") == 60
            assert (
                _total(samples, "offload_api_jobs_rejected_total", type="system.sleep", reason="validation_failed") == 7
            )
            assert _total(samples, "offload_api_jobs_rejected_total", type="unknown", reason="unknown_job_type") == 5
            assert _total(samples, "offload_api_requests_total", route="/v1/jobs", method="POST") == 72
            assert _total(samples, "offload_api_request_seconds_count", route="/v1/jobs", method="POST") == 72
        pids = {
            line.split("pid: ")[1].split(")")[0]
            for line in api.log.read_text().splitlines()
            if "Booting worker" in line
        }
        assert len(pids) == 3
    finally:
        api.stop()
