"""The ffmpeg child runner on real processes: group kills, CPU and memory limits, progress lines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from offload.errors import JobCancelled, PermanentJobError, TransientJobError
from offload.process_groups import group_alive
from offload.worker.priority import session_nice
from offload_media.video import child
from tests.helpers import wait_for

ROOMY = child.Limits(cpu_seconds=60, memory_bytes=3 * 2**30)
#: A shell that leads a group, prints its pid, and leaves a grandchild in the group.
FAMILY = ["sh", "-c", "echo $$; sleep 60 & echo started; sleep 60"]


def test_a_stop_kills_the_whole_group_grandchildren_too(tmp_path: Path) -> None:
    seen: list[str] = []
    with pytest.raises(JobCancelled):
        child.run(
            FAMILY, limits=ROOMY, messages=tmp_path / "log", on_line=seen.append, should_stop=lambda: len(seen) >= 2
        )
    leader = int(seen[0])
    assert not group_alive(leader)


def test_an_exception_in_the_job_thread_kills_the_group_before_it_goes_on(tmp_path: Path) -> None:
    """What Dramatiq's time limit does: an exception raised in the thread while ffmpeg runs."""
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        if line == "started":
            raise TimeoutError("the job's time limit")

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        child.run(FAMILY, limits=ROOMY, messages=tmp_path / "log", on_line=on_line)
    assert not group_alive(int(seen[0])) and time.monotonic() - started < 10


def test_lines_come_as_they_are_written_and_the_status_is_kept(tmp_path: Path) -> None:
    stamps: list[float] = []
    finished = child.run(
        ["sh", "-c", "echo a; sleep 0.5; echo b; echo oops >&2; exit 3"],
        limits=ROOMY,
        messages=tmp_path / "log",
        on_line=lambda _: stamps.append(time.monotonic()),
    )
    assert (finished.returncode, finished.output, finished.messages.strip()) == (3, "a\nb", "oops")
    assert stamps[1] - stamps[0] >= 0.4  # not buffered until the end


def test_the_cpu_limit_kills_an_encoder_that_would_run_long(tmp_path: Path) -> None:
    busy = ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=30:duration=600"]
    busy += ["-c:v", "libx264", "-f", "null", "-"]
    started = time.monotonic()
    finished = child.run(busy, limits=child.Limits(cpu_seconds=1, memory_bytes=3 * 2**30), messages=tmp_path / "log")
    assert finished.returncode == -signal.SIGKILL and time.monotonic() - started < 30
    assert child.failure(finished, doing="transcoding").code == "resource_limit"


def test_the_memory_limit_refuses_an_encoder_more_address_space(tmp_path: Path) -> None:
    encode = ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=30:duration=1"]
    encode += ["-c:v", "libx264", "-f", "null", "-"]
    finished = child.run(
        encode, limits=child.Limits(cpu_seconds=60, memory_bytes=400 * 2**20), messages=tmp_path / "log"
    )
    assert finished.returncode != 0
    error = child.failure(finished, doing="transcoding")
    assert error.code == "resource_limit" and "memory" in error.message
    assert child.run(encode, limits=ROOMY, messages=tmp_path / "log").returncode == 0


def test_a_damaged_input_is_corrupt_input_and_a_missing_program_is_transient(tmp_path: Path) -> None:
    finished = child.Finished(returncode=1, output="", messages="Invalid data found when processing input")
    error = child.failure(finished, doing="transcoding")
    assert isinstance(error, PermanentJobError) and error.code == "corrupt_input"
    with pytest.raises(TransientJobError) as missing:
        child.run([str(tmp_path / "no-ffmpeg")], limits=ROOMY, messages=tmp_path / "log")
    assert missing.value.code == "ffmpeg_unavailable"
    assert os.listdir(tmp_path) == ["log"]


def test_the_child_dies_with_the_worker_process(tmp_path: Path) -> None:
    """A worker killed -9 cannot kill the child's group (it leads its own); the kernel does, by PDEATHSIG."""
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from offload_media.video import child\n"
        "limits = child.Limits(cpu_seconds=60, memory_bytes=3 * 2**30)\n"
        f"child.run(['sh', '-c', 'echo $$; exec sleep 60'], limits=limits, messages=Path({str(tmp_path / 'log')!r}),"
        " on_line=lambda line: print(line, flush=True))\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as worker:
        try:
            assert worker.stdout is not None
            grandchild = int(worker.stdout.readline())
            assert group_alive(grandchild)
            worker.kill()
            worker.wait(timeout=10)
            wait_for(lambda: not group_alive(grandchild), timeout=5, message="the encoder outlived its worker")
        finally:
            if worker.poll() is None:
                worker.kill()


@pytest.mark.skipif(session_nice() is None, reason="no autogroup scheduling here (a container's own CPU cgroup)")
def test_the_child_keeps_the_workers_niceness_in_its_own_session(tmp_path: Path) -> None:
    """Its session would otherwise be a fresh autogroup at 0, beside the API as an equal."""
    script = (
        "import os\n"
        "from pathlib import Path\n"
        "from offload_media.video import child\n"
        "os.nice(7)\n"
        "limits = child.Limits(cpu_seconds=60, memory_bytes=3 * 2**30)\n"
        f"log = Path({str(tmp_path / 'log')!r})\n"
        "print(child.run(['cat', '/proc/self/autogroup'], limits=limits, messages=log).output)\n"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=30)
    assert output.stdout.strip().endswith("nice 7"), output
