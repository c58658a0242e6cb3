"""Offload: background jobs for web apps, over Dramatiq, RabbitMQ and Redis.

The public API, importable from here::

    from offload import JobContext, Payload, WorkerSpec, job   # declaring job types and workers
    from offload import Resources                              # what a spec's resources builder gets
    from offload import Publisher                              # submitting jobs from Python

A map of the package:

- :mod:`offload.jobs`: :func:`job`, :class:`JobType`, :class:`WorkerSpec` (a worker package's
  one export) and :func:`~offload.jobs.installed_specs`.
- :mod:`offload.contracts`: job contracts as data (the built-in types), payload base classes,
  retry policies and priorities; :mod:`offload.contracts.registered` reads a contract back from
  the card a worker registered.
- :mod:`offload.catalogue`: the live set of job types a process may submit, following what
  workers registered.
- :mod:`offload.publish`: :class:`Publisher`, the SDK and the submit sequence the API uses.
- :mod:`offload.worker`: the runtime around handlers (:class:`JobContext`), the middleware every
  worker runs, registration and heartbeats.
- :mod:`offload.status`: the one owner of the Redis layout (job records, indexes, the catalogue).
- :mod:`offload.errors`: every error Offload raises; :mod:`offload.settings`: ``OFFLOAD_*``.
- :mod:`offload.testing`: pytest fixtures for testing a worker package against real services.

Nothing here connects at import; the names below are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from offload.contracts import Concurrency, JobContract, Payload, Priority, RetryPolicy, SubmissionPolicy
    from offload.errors import JobError, OffloadError, PermanentJobError, TransientJobError
    from offload.jobs import JobType, WorkerSpec, job
    from offload.publish import Publisher
    from offload.settings import Settings
    from offload.worker.context import JobContext, Resources

_WHERE = {
    "Concurrency": "offload.contracts",
    "JobContract": "offload.contracts",
    "Payload": "offload.contracts",
    "Priority": "offload.contracts",
    "RetryPolicy": "offload.contracts",
    "SubmissionPolicy": "offload.contracts",
    "JobError": "offload.errors",
    "OffloadError": "offload.errors",
    "PermanentJobError": "offload.errors",
    "TransientJobError": "offload.errors",
    "JobType": "offload.jobs",
    "WorkerSpec": "offload.jobs",
    "job": "offload.jobs",
    "Publisher": "offload.publish",
    "Settings": "offload.settings",
    "JobContext": "offload.worker.context",
    "Resources": "offload.worker.context",
}

__all__ = [
    "Concurrency",
    "JobContext",
    "JobContract",
    "JobError",
    "JobType",
    "OffloadError",
    "Payload",
    "PermanentJobError",
    "Priority",
    "Publisher",
    "Resources",
    "RetryPolicy",
    "Settings",
    "SubmissionPolicy",
    "TransientJobError",
    "WorkerSpec",
    "job",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (``import offload`` stays cheap)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'offload' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
