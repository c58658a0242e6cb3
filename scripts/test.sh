#!/usr/bin/env bash
# The default test suite (`make test`), in two phases:
#  1. every test not marked `serial`, in OFFLOAD_TEST_PROCESSES processes side by side
#     (pytest-xdist; each has its own RabbitMQ vhost, Redis database and storage directory, and a
#     test file stays in one process, so its module fixtures are built once);
#  2. the tests marked `serial` (they measure throughput or latency, which tests beside them would
#     disturb), alone.
# Most of the suite waits on servers and subprocesses, not on the CPU: side by side it takes about
# half the time on two cores. Arguments go to both phases (e.g. a folder, or -k).
set -uo pipefail
cd "$(dirname "$0")/.."

PROCESSES=${OFFLOAD_TEST_PROCESSES:-2}
PYTEST=(python3 -m uv run --frozen --all-packages pytest)

phase() { # rc 5 is "no test collected": a selection may leave a phase empty
  "${PYTEST[@]}" "$@"
  local rc=$?
  [ "$rc" -eq 5 ] && rc=0
  return "$rc"
}

if [ "$PROCESSES" -gt 1 ]; then
  phase -n "$PROCESSES" --dist loadfile -m "not serial" "$@"
else
  phase -m "not serial" "$@"
fi
first=$?
phase -p no:xdist -m serial "$@"
second=$?
[ "$first" -eq 0 ] && [ "$second" -eq 0 ]
