"""Running ffmpeg and ffprobe as children the job controls: limited, watched, killed as a group.

A video decoder is a large attack surface, so it never runs inside the worker process: each
ffmpeg or ffprobe runs as a child in a session (and process group) of its own, with limits on its
CPU time and address space set before it starts (``RLIMIT_CPU``, ``RLIMIT_AS``), no standard input,
and its messages written to a file rather than a pipe nobody reads. Whatever ends the job (a cancel,
the job's time limit raised in its thread, a worker shutting down) kills the whole group before
the call returns, so no encoder outlives its job.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from offload.errors import JobCancelled, PermanentJobError, TransientJobError

#: Seconds between two looks at the cancel flag while a child runs quietly.
POLL_S = 0.25
#: The last bytes of a child's messages kept for an error.
TAIL_BYTES = 4000
#: What ffmpeg and its libraries say when RLIMIT_AS refuses them memory.
OUT_OF_MEMORY = ("Cannot allocate memory", "malloc of size", "failed to map segment", "Out of memory")
#: The exit status of a program the dynamic loader could not map (RLIMIT_AS below its libraries).
EXIT_LOADER_FAILED = 127


#: ``prctl`` option: the signal the kernel sends this process when the thread that started it ends.
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Have the kernel kill this child if its parent dies (a worker killed -9 must not leave an encoder)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def keep_niceness() -> None:
    """Give this process's new session the process's own niceness (Linux autogroup scheduling).

    With autogroup, the CPU is shared between sessions first and by niceness only inside one: a
    child leading a new session would start a fresh group at niceness 0 and escape the worker's
    ``OFFLOAD_WORKER_NICE`` (:mod:`offload.worker.priority`), competing with the API as an equal.
    """
    niceness = os.nice(0)
    if niceness > 0:
        with contextlib.suppress(OSError):
            Path("/proc/self/autogroup").write_text(str(niceness))


@dataclass(frozen=True)
class Limits:
    """What one child may use."""

    cpu_seconds: int
    memory_bytes: int

    def apply(self) -> None:
        """Set the limits on the calling process (run in the child, between fork and exec).

        The child also dies with the worker: it leads a session of its own (so that it can be
        killed as a group), which puts it out of reach of whatever kills the worker's group.
        """
        _die_with_parent()
        keep_niceness()
        # Soft and hard limits equal: the kernel then sends SIGKILL, which ffmpeg cannot catch (it
        # treats SIGXCPU as a request to finish, and would leave a short file that looks whole).
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (self.memory_bytes, self.memory_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@dataclass(frozen=True)
class Finished:
    """How a child ended: its exit status, what it printed (stdout) and the tail of its messages."""

    returncode: int
    output: str
    messages: str


def run(
    argv: Sequence[str],
    *,
    limits: Limits,
    messages: Path,
    on_line: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Finished:
    """Run ``argv`` to its end, handing each line of its output to ``on_line`` as it comes.

    ``should_stop`` is asked every line and at least every 250 ms; when it says so, or when
    anything raises here (``on_line``, or the job's time limit, which Dramatiq raises in this
    thread), the child's process group is killed and reaped before the exception goes on.
    A call that returns has a child that ended by itself.

    Raises:
        TransientJobError: the program is not installed (``ffmpeg_unavailable``).
        JobCancelled: ``should_stop`` said so (the group is dead by then).
    """
    lines: list[str] = []
    with open(messages, "wb") as errors:
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                start_new_session=True,
                preexec_fn=limits.apply,
                close_fds=True,
            )
        except FileNotFoundError:
            raise TransientJobError(
                f"{Path(argv[0]).name} is not installed on this worker.", code="ffmpeg_unavailable"
            ) from None
        try:
            assert process.stdout is not None
            os.set_blocking(process.stdout.fileno(), False)
            with selectors.DefaultSelector() as selector:
                selector.register(process.stdout, selectors.EVENT_READ)
                pending = b""
                while True:
                    if should_stop():
                        raise JobCancelled("The job was cancelled while ffmpeg ran; ffmpeg was stopped.")
                    if not selector.select(POLL_S):
                        continue
                    chunk = process.stdout.read(65536)
                    if not chunk:  # end of output: the child is ending
                        break
                    pending += chunk
                    *complete, pending = pending.split(b"\n")
                    for raw in complete:
                        line = raw.decode("utf-8", "replace").strip()
                        lines.append(line)
                        if on_line is not None:
                            on_line(line)
            returncode = process.wait()
        finally:
            kill_group(process)
    with open(messages, "rb") as errors:
        errors.seek(max(0, os.path.getsize(messages) - TAIL_BYTES))
        tail = errors.read().decode("utf-8", "replace")
    return Finished(returncode, "\n".join(lines), tail)


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill every process of ``process``'s group (it leads it), and reap the leader.

    The group can outlive its leader (a child ffmpeg started), so it is killed even when the
    leader has ended; a group that is already gone is not an error.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if process.stdout is not None:
        process.stdout.close()


def failure(finished: Finished, *, doing: str) -> PermanentJobError:
    """The error of a child that failed: a limit it ran into, or the input it could not read.

    The message says what happened in a sentence; ffmpeg's own words (which name files and
    codecs) go to the job's log, not into the error.
    """
    if finished.returncode in (-signal.SIGKILL, -signal.SIGXCPU):  # RLIMIT_CPU (or the kernel's OOM killer)
        return PermanentJobError(
            f"{doing.capitalize()} needed more CPU time than a video job may use.", code="resource_limit"
        )
    if finished.returncode == EXIT_LOADER_FAILED or any(sign in finished.messages for sign in OUT_OF_MEMORY):
        return PermanentJobError(
            f"{doing.capitalize()} needed more memory than a video job may use.", code="resource_limit"
        )
    return PermanentJobError(
        f"{doing.capitalize()} failed: the video is damaged, truncated or uses a feature that is not supported.",
        code="corrupt_input",
    )
