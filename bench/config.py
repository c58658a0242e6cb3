"""Where the benchmark's servers are and the settings every process it starts shares.

Everything runs on loopback against the ``offload_bench`` RabbitMQ vhost and Redis database 13,
which the benchmark owns: it deletes their queues and flushes the database before and after each
measurement. Child processes get the same settings as ``OFFLOAD_*`` environment variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from offload.settings import Settings

#: The repository root (the benchmark runs its children from here so ``bench`` is importable).
ROOT = Path(__file__).resolve().parent.parent
#: Where ``latest.json`` and the children's logs go (gitignored).
RESULTS = ROOT / "bench" / "results"

#: ``BENCH_VHOST`` and ``BENCH_REDIS_DB`` move the benchmark elsewhere (a vhost and db of one's own
#: where several people share a machine); it flushes and deletes what it finds there.
VHOST = os.environ.get("BENCH_VHOST", "offload_bench")
BROKER_URL = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
REDIS_URL = f"redis://127.0.0.1:6379/{int(os.environ.get('BENCH_REDIS_DB', '13'))}"
#: The API key the benchmark authenticates with (a client of tenant ``bench``).
API_KEY = "bench-api-key-0123456789-abcdef"
TENANT = "bench"
REDIS_PREFIX = "offload"
#: Requests per second the benchmark's tenant may make to the API (about 30 times what it reaches).
TENANT_RATE_LIMIT = 50_000

#: The queues the real worker and publisher use (the worker declares its domain queues too).
OUR_QUEUES = (
    *("system", "system.DQ", "system.XQ"),
    *("email", "email.DQ", "email.XQ"),
    *("webhooks", "webhooks.DQ", "webhooks.XQ"),
)
#: The queue of the bare Dramatiq reference actors (with Dramatiq's delay and dead-letter queues).
BARE_QUEUE = "bench_bare"
BARE_QUEUES = (BARE_QUEUE, f"{BARE_QUEUE}.DQ", f"{BARE_QUEUE}.XQ")

#: Environment the children get (on top of the inherited one, minus any other ``OFFLOAD_*``).
OFFLOAD_ENV = {
    "OFFLOAD_ENV": "test",
    "OFFLOAD_BROKER_URL": BROKER_URL,
    "OFFLOAD_REDIS_URL": REDIS_URL,
    "OFFLOAD_REDIS_PREFIX": REDIS_PREFIX,
    "OFFLOAD_API_KEYS": f"{API_KEY}={TENANT}:client",
    "OFFLOAD_LOG_LEVEL": "WARNING",
    "OFFLOAD_LOG_FORMAT": "text",
    # A per-tenant rate limit the benchmark's tenant never reaches, so the API row includes what the
    # limit costs every accepted request (a shared bucket in Redis, spent in leases).
    "OFFLOAD_TENANT_RATE_LIMIT": str(TENANT_RATE_LIMIT),
}


def isolate_environment() -> None:
    """Drop any ``OFFLOAD_*`` variable of the caller's shell and put the benchmark's in its place.

    Both the settings built here and every child then read exactly the same values.
    """
    for name in [n for n in os.environ if n.startswith("OFFLOAD_")]:
        del os.environ[name]
    os.environ.update(OFFLOAD_ENV)


def settings() -> Settings:
    """The settings of the benchmark's own publisher (the same values the children get)."""
    return Settings(
        broker_url=BROKER_URL,
        redis_url=REDIS_URL,
        redis_prefix=REDIS_PREFIX,
        api_keys=f"{API_KEY}={TENANT}:client",
        env="test",
        log_format="text",
        log_level="WARNING",
        tenant_rate_limit=TENANT_RATE_LIMIT,
    )


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: ours, the benchmark's settings, and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    env.update(OFFLOAD_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and for how long (from the command line)."""

    quick: bool
    #: Seconds of each measured HTTP load run.
    duration: float
    #: Seconds of unmeasured load before each HTTP measurement.
    warmup: float
    #: Concurrent HTTP connections.
    concurrency: int
    #: Jobs per drain measurement.
    jobs: int
    #: Interleaved bare/ours drain rounds.
    rounds: int
    #: Jobs sent one at a time for the latency measurement.
    probes: int
    #: Seconds between two latency probes.
    probe_interval: float
    #: Worker processes and threads of both drains (and of the email worker).
    processes: int
    threads: int
    #: ``email.send`` jobs, ``email.batch`` jobs (of :data:`bench.notify.BATCH_SIZE` recipients)
    #: and jobs with a callback URL (one webhook each) of the email and webhook measurements.
    emails: int
    batches: int
    webhooks: int
    #: Jobs the enqueue measurement sends one at a time per system and round (its batches send ``jobs``).
    enqueues: int
    #: Which measurements to run (``api``, ``drain``, ``latency``, ``email``, ``webhooks``).
    only: frozenset[str]
    #: Folder for the children's logs of this run.
    logs: Path
    #: Retained succeeded jobs at which the scale measurement times reads (cumulative), jobs per
    #: kind for its bytes per record, and its soak's jobs and their retention (seconds).
    scale_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    scale_bytes_jobs: int = 20_000
    scale_soak: int = 100_000
    scale_retention: int = 60
