"""BullMQ, the anchor several sections measure Offload beside: its Node scripts in ``bench/bullmq/``.

- :func:`ensure_installed` installs BullMQ, ioredis and Fastify from ``bench/bullmq/package-lock.json``
  (``npm ci``) when ``node_modules`` lacks one of the versions ``package.json`` pins, before anything
  is timed;
- :func:`run_script` runs one script to its end and returns the one JSON document it printed;
- :func:`start` starts a long-running one (the workers, the HTTP server) as a :class:`~bench.procs.Child`;
- :func:`remove_keys` deletes every key under :data:`PREFIX`, BullMQ's own prefix on the benchmark's
  Redis database, after each run.

Every script talks only to the benchmark's Redis (``REDIS_URL``, on loopback).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import redis

from bench.config import REDIS_URL, ROOT, BenchConfig, child_env
from bench.procs import Child

BULLMQ = ROOT / "bench" / "bullmq"
#: BullMQ's key prefix in the benchmark's database (its default is ``bull``).
PREFIX = "benchbull"
#: The queue every BullMQ run uses.
QUEUE = "bench"
#: Jobs per ``addBulk`` call (``bench/bullmq/enqueue.mjs``).
BULK_CHUNK = 1_000


def missing_packages(folder: Path) -> list[str]:
    """``name@version`` of each dependency ``folder/package.json`` pins that ``folder/node_modules`` lacks.

    A dependency counts as installed when ``node_modules/<name>/package.json`` names exactly the
    pinned version; a missing or unreadable one, or another version, is listed.
    """
    wanted: dict[str, str] = json.loads((folder / "package.json").read_text()).get("dependencies", {})
    missing = []
    for name, version in sorted(wanted.items()):
        try:
            found = json.loads((folder / "node_modules" / name / "package.json").read_text()).get("version")
        except (OSError, ValueError):
            found = None
        if found != version:
            missing.append(f"{name}@{version}")
    return missing


def ensure_installed(folder: Path = BULLMQ) -> None:
    """Install ``folder``'s Node dependencies from its lock file (``npm ci``) unless they are there.

    ``folder`` is ``bench/bullmq`` by default; the tests' wire publisher (``tests/wire/node``) is
    installed the same way.

    Raises:
        RuntimeError: Node.js or npm is missing, or ``npm ci`` failed.
    """
    if not shutil.which("node") or not shutil.which("npm"):
        raise RuntimeError("Node.js and npm are needed (apt-get install nodejs npm)")
    missing = missing_packages(folder)
    if not missing:
        return
    where = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
    print(f">> installing {', '.join(missing)} from {where}/package-lock.json (npm ci)", flush=True)
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--silent"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0 or missing_packages(folder):
        raise RuntimeError(f"npm ci in {where} failed ({done.returncode}): {done.stderr[-2000:]}")


def last_json(output: str) -> dict[str, Any]:
    """The JSON document on the last non-blank line of ``output`` (what every script prints last).

    Raises:
        ValueError: there is no such line, or it is not a JSON object.
    """
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        raise ValueError("no output")
    document = json.loads(lines[-1])
    if not isinstance(document, dict):
        raise ValueError(f"not a JSON object: {lines[-1][:200]}")
    return document


def argv(script: str, *args: object) -> list[str]:
    """``node bench/bullmq/<script> <REDIS_URL> <PREFIX> <QUEUE> args...``."""
    return ["node", str(BULLMQ / script), REDIS_URL, PREFIX, QUEUE, *(str(arg) for arg in args)]


def run_script(script: str, *args: object, timeout: float = 600) -> dict[str, Any]:
    """Run ``script`` (see :func:`argv`) to its end and return the JSON document it printed.

    Raises:
        RuntimeError: it failed, timed out or printed no JSON document.
    """
    try:
        done = subprocess.run(argv(script, *args), capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{script} took more than {timeout:.0f} s") from None
    if done.returncode != 0:
        raise RuntimeError(f"{script} exited with {done.returncode}: {done.stderr[-2000:]}")
    try:
        return last_json(done.stdout)
    except ValueError as exc:
        raise RuntimeError(f"{script} printed no JSON document ({exc}): {done.stdout[-500:]}") from None


def start(cfg: BenchConfig, name: str, script: str, *args: object) -> Child:
    """Start ``script`` (see :func:`argv`) as a child in its own process group, logging to ``cfg.logs``."""
    return Child(name, argv(script, *args), env=child_env(), logs=cfg.logs)


def start_workers(cfg: BenchConfig, name: str, mode: str) -> Child:
    """``worker.mjs``: ``cfg.processes`` processes × ``cfg.threads`` concurrency, in ``mode`` (``noop``, ``probe``)."""
    return start(cfg, name, "worker.mjs", cfg.processes, cfg.threads, mode)


def remove_keys(client: redis.Redis | None = None) -> int:
    """Delete every key under :data:`PREFIX` in the benchmark's database; returns how many there were."""
    own = client is None
    conn = client if client is not None else redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        removed = 0
        batch: list[Any] = []
        for key in conn.scan_iter(match=f"{PREFIX}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += int(conn.delete(*batch))
                batch = []
        if batch:
            removed += int(conn.delete(*batch))
        return removed
    finally:
        if own:
            conn.close()
