"""Worker processes of CPU-heavy services yield the CPU: their niceness, and their session's
autogroup niceness when a supervisor gave the service a session of its own."""

from __future__ import annotations

import subprocess
import sys

import pytest

from offload.settings import Settings
from offload.worker.priority import session_nice
from offload_email.settings import EmailSettings
from offload_media.settings import MediaSettings
from offload_reports.settings import ReportSettings

CHILD = (
    "import os; from offload.worker.priority import session_nice, yield_cpu;"
    "yield_cpu(int(os.environ['NICE'])); print(os.nice(0), session_nice())"
)


def _run(niceness: int, *, own_session: bool) -> tuple[int, int]:
    # Through a shell that stays the parent: so the child's parent never leads pytest's session.
    result = subprocess.run(
        ["sh", "-c", '"$0" -c "$1"; exit $?', sys.executable, CHILD],
        env={"NICE": str(niceness), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        start_new_session=own_session,
    )
    assert result.returncode == 0, result.stderr
    nice, group = result.stdout.split()
    return int(nice), int(group)


needs_autogroup = pytest.mark.skipif(
    session_nice() is None, reason="autogroup scheduling does not apply here (off, or a CPU cgroup of its own)"
)


@needs_autogroup
def test_a_worker_in_a_session_of_its_own_yields_as_a_session() -> None:
    assert _run(10, own_session=True) == (10, 10)  # the shell leads the session: the parent rule


@needs_autogroup
def test_a_worker_started_from_a_shell_leaves_the_shell_session_alone() -> None:
    before = session_nice()
    nice, group = _run(10, own_session=False)
    assert nice == 10 and group == before


def test_workers_default_to_a_ladder_below_the_api_email_before_images_and_reports() -> None:
    assert Settings.model_fields["worker_nice"].default == 0  # what the API and scheduler would take
    assert EmailSettings.model_fields["worker_nice"].default == 5
    assert MediaSettings.model_fields["worker_nice"].default == 15
    assert ReportSettings.model_fields["worker_nice"].default == 15
