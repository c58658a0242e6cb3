"""``make up``'s supervisor: Procfile.dev's processes, restarted when they die, stopped cleanly."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from offload.supervisor import read_procfile
from tests.helpers import ROOT, VENV_BIN, children, free_port, port_open, spawn, wait_for
from tests.system.stack import Api


def _pids(log: Path, name: str) -> list[int]:
    return [int(pid) for pid in re.findall(rf"\| {name} started \(pid (\d+)\)", log.read_text())]


def test_a_killed_worker_is_back_within_10_s_its_jobs_finish_and_a_stop_ends_everything(
    env: dict[str, str], logs: Path
) -> None:
    port = free_port()
    log = logs / "supervisor.log"
    supervisor = spawn(
        [str(VENV_BIN / "python"), "-m", "offload.supervisor", "--only", "api,worker-email", "--grace", "30"],
        env={**env, "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port}"},
        log=log,
    )
    try:
        wait_for(lambda: port_open(port) and "ready for action" in log.read_text(), timeout=30)
        api = Api.__new__(Api)  # the supervisor's API process, reached on its port
        api.port = port
        accepted = [
            api.request("POST", "/v1/jobs", {"type": "system.sleep", "payload": {"ms": 300, "steps": 3}})[2]["id"]
            for _ in range(20)
        ]
        (worker_pid,) = _pids(log, "worker-email")
        os.kill(children(worker_pid)[0], signal.SIGKILL)  # one worker process, mid-job
        killed_at = time.monotonic()
        wait_for(lambda: len(_pids(log, "worker-email")) == 2, timeout=10)
        wait_for(lambda: log.read_text().count("ready for action") >= 2, timeout=15)
        back_s = time.monotonic() - killed_at
        assert back_s <= 10, back_s
        assert re.search(
            r"system\s+\| worker-email exited with code \S+ after [\d.]+ s; restarting in 1 s", log.read_text()
        )
        assert re.search(r"\d\d:\d\d:\d\d api\s+\| ", log.read_text())  # output prefixed by service

        def all_succeeded() -> bool:
            return all(api.request("GET", f"/v1/jobs/{job_id}")[2]["state"] == "succeeded" for job_id in accepted)

        wait_for(all_succeeded, timeout=60, interval=0.5)
        # make down / Ctrl-C: every process gets SIGTERM and the supervisor exits 0.
        services = [pid for name in ("api", "worker-email") for pid in _pids(log, name)[-1:]]
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=40) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in services)
        assert "all stopped" in log.read_text()
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)


def test_the_procfile_is_read_in_order_and_a_malformed_one_is_refused(tmp_path: Path) -> None:
    assert list(read_procfile(ROOT / "Procfile.dev"))[:2] == ["api", "worker-email"]
    bad = tmp_path / "Procfile"
    bad.write_text("api: offload-api\napi: again\n")
    with pytest.raises(ValueError, match=":2: expected a new"):
        read_procfile(bad)
