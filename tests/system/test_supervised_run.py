"""``make up``'s supervisor: Procfile.dev's processes, restarted when they die, stopped cleanly."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from offload.process_groups import processes
from offload.supervisor import read_procfile
from tests.helpers import ROOT, VENV_BIN, children, free_port, port_open, spawn, wait_for
from tests.support import queue_consumers
from tests.system.stack import Api


def _pids(log: Path, name: str) -> list[int]:
    return [int(pid) for pid in re.findall(rf"\| {name} started \(pid (\d+)\)", log.read_text())]


def _group(pgid: int) -> list[int]:
    """The live processes of process group ``pgid``."""
    return [entry.pid for entry in processes() if entry.pgid == pgid]


def _alive(pid: int) -> bool:
    return any(entry.pid == pid for entry in processes())


def _ready(log: Path, name: str) -> int:
    """How many times a worker process of ``name`` said it was ready."""
    return len(re.findall(rf"\d\d:\d\d:\d\d {re.escape(name)}\s+\| .*ready for action", log.read_text()))


def _worker_queues() -> dict[str, list[str]]:
    """Each worker service of Procfile.dev and the queues it consumes (with their delay queues)."""
    found = {}
    for name, command in read_procfile(ROOT / "Procfile.dev").items():
        if " --queues " in command:
            queues = command.split(" --queues ", 1)[1].split(" --", 1)[0].split()
            found[name] = [*queues, *(f"{queue}.DQ" for queue in queues)]
    return found


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


def test_a_sigkilled_worker_main_process_is_replaced_not_joined_and_nothing_of_it_outlives_a_stop(
    env: dict[str, str], logs: Path
) -> None:
    """Issue 25: the OOM killer's SIGKILL to a ``dramatiq`` main process left its worker processes
    consuming beside the restarted service, and alive after ``make up`` stopped."""
    workers = _worker_queues()
    assert set(workers) == {"worker-email", "worker-webhooks", "worker-push", "worker-media", "worker-reports"}
    queues = sorted({queue for served in workers.values() for queue in served})
    log = logs / "supervisor.log"
    supervisor = spawn(
        [str(VENV_BIN / "python"), "-m", "offload.supervisor", "--only", ",".join(workers), "--grace", "30"],
        env=env,
        log=log,
    )
    try:
        wait_for(lambda: all(_ready(log, name) >= 1 for name in workers), timeout=90, interval=0.2)
        # One consumer per queue and service serving it: the system queue has one per worker service.
        expected = {queue: sum(queue in served for served in workers.values()) for queue in queues}
        wait_for(lambda: queue_consumers(queues) == expected, timeout=10, interval=0.2)
        mains = {name: _pids(log, name)[-1] for name in workers}
        for name, main in mains.items():
            assert len(_group(main)) >= 2, name  # the main process and its worker process(es)
            os.kill(main, signal.SIGKILL)
        wait_for(lambda: all(_ready(log, name) >= 2 for name in workers), timeout=120, interval=0.2)
        text = log.read_text()
        for name, main in mains.items():
            assert _group(main) == [], name  # no process of the old group alive
            assert re.search(rf"{name}: \d+ process\(es\) of its last run still alive", text), name
            ended = text.index(f"{name}: what was left of its last run has ended")
            assert ended < text.rindex(f"{name} started (pid"), name  # ended before it started again
        assert queue_consumers(queues) == expected
        time.sleep(1)
        assert queue_consumers(queues) == expected

        # make down right after another SIGKILL: the orphans are ended too, and nothing is left.
        os.kill(_pids(log, "worker-media")[-1], signal.SIGKILL)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=60) == 0
        assert "all stopped" in log.read_text()
        assert [pid for name in workers for pid in _pids(log, name) if _group(pid)] == []
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
        for group in (pid for name in workers for pid in _pids(log, name) if _group(pid)):
            os.killpg(group, signal.SIGKILL)  # a failed run leaves nothing consuming the test vhost


def test_leftovers_that_left_the_group_or_ignore_sigterm_are_ended_before_a_restart_and_at_stop(
    tmp_path: Path,
) -> None:
    """The subreaper path: a child that called setsid is no longer in the group killpg reaches."""
    pids_file = tmp_path / "pids"
    procfile = tmp_path / "Procfile"
    procfile.write_text(f"family: {VENV_BIN / 'python'} tests/system/family.py {pids_file}\n")
    log = tmp_path / "supervisor.log"
    supervisor = spawn(
        [str(VENV_BIN / "python"), "-m", "offload.supervisor", "-f", str(procfile), "--grace", "1"]
        + ["--leftover-grace", "1"],
        env={},
        log=log,
    )

    def runs() -> list[list[int]]:
        text = pids_file.read_text() if pids_file.exists() else ""
        return [[int(pid) for pid in line.split()] for line in text.splitlines()]

    try:
        wait_for(lambda: len(runs()) == 1, timeout=20)
        main, in_group, stray = runs()[0]
        assert _group(main) == sorted([main, in_group]) and _alive(stray)
        os.kill(main, signal.SIGKILL)
        wait_for(lambda: len(runs()) == 2, timeout=20)
        assert not _alive(in_group) and not _alive(stray)
        text = log.read_text()
        assert f"family: 2 process(es) of its last run still alive (pids {min(in_group, stray)}, " in text
        assert "family: its last run's processes outlived 1 s; killing them" in text  # the stray ignored SIGTERM
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=20) == 0
        assert not any(_alive(pid) for pid in runs()[1])
        assert re.search(r"orphaned processes \d+ did not stop within 1 s; killing them", log.read_text())
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
        for pid in (pid for run in runs() for pid in run):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_procfile_is_read_in_order_and_a_malformed_one_is_refused(tmp_path: Path) -> None:
    assert list(read_procfile(ROOT / "Procfile.dev"))[:2] == ["api", "worker-email"]
    bad = tmp_path / "Procfile"
    bad.write_text("api: offload-api\napi: again\n")
    with pytest.raises(ValueError, match=":2: expected a new"):
        read_procfile(bad)
