"""Every Grafana panel's query, run by a real Prometheus scraping a real running suite with traffic (issue 7).

The suite (the API with metrics on, the email worker's processes with Dramatiq's exposition
server) runs on loopback; Prometheus (Debian's package) scrapes it every second; after some
traffic, each panel's PromQL goes through Prometheus' HTTP API and must return series.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from functools import partial
from pathlib import Path

from offload.publish import Publisher
from tests.helpers import free_port, missing, spawn, stop, wait_for
from tests.support import KEYS
from tests.system.stack import Api, Worker

DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"


def _panel_queries() -> list[tuple[str, str, str]]:
    queries = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                queries.append((path.name, panel["title"], target["expr"]))
    return queries


def _query(port: int, expr: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(json.loads(response.read()))


def _all_ended(publisher: Publisher, jobs: list[str]) -> bool:
    records = [publisher.get(job_id) for job_id in jobs]
    return all(record is not None and record.state.terminal for record in records)


def _targets_up(port: int) -> int:
    try:
        result = _query(port, "sum(up)")["data"]["result"]
    except OSError:  # not listening yet
        return 0
    return int(float(result[0]["value"][1])) if result else 0


def test_every_dashboard_panel_query_returns_series_from_a_live_prometheus(
    env, logs: Path, tmp_path: Path, publisher: Publisher
) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        missing(
            "prometheus",
            under_ci="`make test` installs Debian's prometheus package",
            locally="apt-get install prometheus",
        )
    worker_port = free_port()
    env = {**env, "OFFLOAD_METRICS": "true", "dramatiq_prom_host": "127.0.0.1", "dramatiq_prom_port": str(worker_port)}
    env["dramatiq_prom_db"] = str(tmp_path / "worker-metrics")
    api = Api(env, logs, workers=2)
    worker = Worker(env, logs, domain="email", threads=2, processes=2)
    prometheus_port = free_port()
    (tmp_path / "key").write_text(KEYS["admin"])
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: offload-api
    authorization: {{type: Bearer, credentials_file: {tmp_path / "key"}}}
    static_configs: [{{targets: ["127.0.0.1:{api.port}"]}}]
  - job_name: offload-worker-email
    static_configs: [{{targets: ["127.0.0.1:{worker_port}"]}}]
"""
    )
    prometheus = spawn(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
        ],
        env={"PATH": "/usr/bin:/bin"},
        log=logs / "prometheus.log",
    )
    try:
        wait_for(
            lambda: _targets_up(prometheus_port) == 2,
            timeout=30,
            message=lambda: (logs / "prometheus.log").read_text()[-2000:],
        )
        for round_ in range(6):  # traffic over several scrapes: successes, failures, retries, refusals
            jobs = [api.request("POST", "/v1/jobs", {"type": "system.noop"})[2]["id"] for _ in range(10)]
            jobs.append(
                api.request("POST", "/v1/jobs", {"type": "system.fail", "payload": {"permanent": True}})[2]["id"]
            )
            retried = {"type": "system.fail", "payload": {"succeed_on_attempt": 2}, "options": {"max_retries": 1}}
            jobs.append(api.request("POST", "/v1/jobs", retried)[2]["id"])
            api.request("POST", "/v1/jobs", {"type": "system.noop", "payload": {"echo": 1}})  # a 422
            wait_for(partial(_all_ended, publisher, jobs), timeout=20)
            if round_ == 0:
                wait_for(lambda: _query(prometheus_port, "offload_jobs_total")["data"]["result"], timeout=15)
        # A rate needs two scrapes of a series: give every panel up to 30 s to have them.
        queries = _panel_queries()

        def empty_panels() -> list[str]:
            empty = []
            for dashboard, title, expr in queries:
                # Grafana's variables as a viewer would set them: the traffic here is on the system queue.
                answer = _query(prometheus_port, expr.replace("$__rate_interval", "1m").replace("$queue", "system"))
                assert answer["status"] == "success", (dashboard, title, answer)
                if not answer["data"]["result"]:
                    empty.append(f"{dashboard}: {title}: {expr}")
            return empty

        wait_for(
            lambda: not empty_panels(),
            timeout=30,
            interval=1,
            message=lambda: "panels without series:\n" + "\n".join(empty_panels()),
        )
        assert len(queries) >= 20
    finally:
        stop(prometheus)
        worker.stop()
        api.stop()
