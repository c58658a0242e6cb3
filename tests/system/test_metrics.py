"""Worker metrics: Dramatiq's and Offload's, from several worker processes, add up to the true counts (issue 7)."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from offload.publish import Publisher
from tests.helpers import free_port, wait_for
from tests.system.stack import Worker


def _scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
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
