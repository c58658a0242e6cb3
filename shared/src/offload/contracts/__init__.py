"""Job contracts: every job type Offload knows, as pure data (no I/O imports; see README.md).

Add a domain by writing ``contracts/<domain>.py`` with a ``CONTRACTS`` tuple and listing it in
:data:`REGISTRY` below. The API, the workers, ``GET /v1/job-types``, the OpenAPI document and the
JSON Schemas all pick it up from here, with no edit anywhere else.
"""

from __future__ import annotations

from offload.contracts import email, media, ops, reports, system, webhook
from offload.contracts._base import (
    MAX_BROKER_PRIORITY,
    Concurrency,
    JobContract,
    Payload,
    Priority,
    RetryPolicy,
    pydantic_errors,
)
from offload.contracts.ops import SCHEDULES, Schedule
from offload.contracts.registry import Registry
from offload.contracts.system import SYSTEM_QUEUE

#: Every contract Offload serves.
REGISTRY = Registry(
    [*system.CONTRACTS, *email.CONTRACTS, *media.CONTRACTS, *reports.CONTRACTS, *ops.CONTRACTS, *webhook.CONTRACTS]
)

__all__ = [
    "MAX_BROKER_PRIORITY",
    "REGISTRY",
    "SCHEDULES",
    "SYSTEM_QUEUE",
    "Concurrency",
    "JobContract",
    "Payload",
    "Priority",
    "Registry",
    "RetryPolicy",
    "Schedule",
    "pydantic_errors",
]
