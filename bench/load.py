"""HTTP load: Debian's ``wrk`` with a Lua script that POSTs and counts status codes.

``wrk`` is installed with ``apt-get install -y wrk`` when missing (the benchmark runs as root). If
that fails, a bounded Python driver (threads with keep-alive connections) takes its place; it uses
far more CPU per request than wrk, on the same two cores, so its figures are lower bounds.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.stats import percentile

_LUA = r"""
wrk.method = "POST"
wrk.body = __BODY__
wrk.headers["Content-Type"] = "application/json"
__AUTH__

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("statuses")
    for status, n in pairs(counts) do
      merged[status] = (merged[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(merged) do
    parts[#parts + 1] = string.format('"%d": %d', status, n)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "statuses": {%s}, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %.1f, "p90": %.1f, "p99": %.1f, "max": %.1f, "mean": %.1f}}\n',
    summary.requests, summary.duration, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass
class LoadResult:
    """What one load run measured."""

    tool: str
    requests: int
    seconds: float
    statuses: dict[int, int]
    #: Socket errors and timeouts (not counting non-2xx answers).
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    raw: dict[str, object] = field(default_factory=dict)

    def count(self, status: int) -> int:
        """Responses with ``status``."""
        return self.statuses.get(status, 0)

    def rate(self, status: int) -> float:
        """Responses with ``status`` per second."""
        return self.count(status) / self.seconds if self.seconds else 0.0

    def other(self, status: int) -> int:
        """Responses with any status but ``status``."""
        return sum(n for s, n in self.statuses.items() if s != status)


def ensure_wrk() -> str | None:
    """The path of ``wrk``, installing Debian's package if needed; None if it cannot be had."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    print(">> installing wrk (apt-get install -y wrk)", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (
        ["apt-get", "install", "-y", "-q", "wrk"],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "wrk"],
    ):
        try:
            done = subprocess.run(step, env=env, capture_output=True, timeout=300, check=False)
        except subprocess.TimeoutExpired:
            return None
        if step[1] == "install" and done.returncode == 0:
            break
    return shutil.which("wrk")


def lua_script(body: str, api_key: str | None) -> str:
    """The wrk script POSTing ``body`` (with a bearer key if given) and counting status codes."""
    auth = f'wrk.headers["Authorization"] = {json.dumps("Bearer " + api_key)}' if api_key else ""
    return _LUA.replace("__BODY__", json.dumps(body)).replace("__AUTH__", auth)


def run_wrk(
    wrk: str, url: str, *, body: str, api_key: str | None, concurrency: int, seconds: float, threads: int = 2
) -> LoadResult:
    """Run wrk against ``url`` for ``seconds`` and parse the script's summary line.

    Raises:
        RuntimeError: wrk failed or printed no summary.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua_script(body, api_key))
    try:
        argv = [
            wrk,
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            script.name,
            url,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    finally:
        Path(script.name).unlink(missing_ok=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    errors = data["errors"]
    latency = data["latency_us"]
    return LoadResult(
        tool="wrk",
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        statuses={int(k): v for k, v in data["statuses"].items()},
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        raw={"wrk_stdout": done.stdout},
    )


def run_python(url: str, *, body: str, api_key: str | None, concurrency: int, seconds: float) -> LoadResult:
    """The fallback driver: ``concurrency`` threads, each with one keep-alive connection, for ``seconds``."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    encoded = body.encode()
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = [0]
    start = time.monotonic()
    deadline = start + seconds

    def drive() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        mine: list[float] = []
        mine_statuses: dict[int, int] = {}
        while time.monotonic() < deadline:
            began = time.perf_counter()
            try:
                conn.request("POST", "/" + path, body=encoded, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                with lock:
                    errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=5)
                continue
            mine.append((time.perf_counter() - began) * 1000)
            mine_statuses[response.status] = mine_statuses.get(response.status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for status, n in mine_statuses.items():
                statuses[status] = statuses.get(status, 0) + n

    workers = [threading.Thread(target=drive, daemon=True) for _ in range(concurrency)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 15)
    elapsed = time.monotonic() - start
    return LoadResult(
        tool="python",
        requests=len(latencies),
        seconds=elapsed,
        statuses=statuses,
        socket_errors=errors[0],
        p50_ms=percentile(latencies, 50),
        p90_ms=percentile(latencies, 90),
        p99_ms=percentile(latencies, 99),
        max_ms=max(latencies, default=float("nan")),
    )


def run_load(
    wrk: str | None, url: str, *, body: str, api_key: str | None, concurrency: int, seconds: float
) -> LoadResult:
    """Load ``url`` with wrk if available, else with the Python driver."""
    if wrk:
        return run_wrk(wrk, url, body=body, api_key=api_key, concurrency=concurrency, seconds=seconds)
    return run_python(url, body=body, api_key=api_key, concurrency=concurrency, seconds=seconds)
