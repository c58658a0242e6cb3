"""A service that leaves processes behind when it is killed, for the supervisor's tests.

It forks two children before it writes ``<main pid> <child pids...>`` as a line to the file named
by its first argument: one stays in its process group (as Dramatiq's worker processes do), the
other leaves it with ``setsid`` and ignores SIGTERM (only the supervisor's subreaping finds it,
and only SIGKILL ends it). Then all three wait forever.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def _wait_forever() -> None:
    while True:
        time.sleep(0.2)


def main() -> None:
    children = []
    for leaves_group in (False, True):
        pid = os.fork()
        if pid == 0:
            if leaves_group:
                os.setsid()
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _wait_forever()
        children.append(pid)
    with open(sys.argv[1], "a") as pids:
        pids.write(" ".join(str(pid) for pid in (os.getpid(), *children)) + "\n")
    _wait_forever()


if __name__ == "__main__":
    main()
