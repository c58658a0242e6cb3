"""Job contracts as data: the built-in job types, and the types every contract is made of.

Each module here (``system.py``, ``email.py``, ...) declares one domain's contracts and exports
them in a ``CONTRACTS`` tuple; :data:`BUILT_IN` gathers every such module it finds, so a new
module needs no edit anywhere else. A worker binds a contract to its handler with
:func:`offload.jobs.job` and registers it at boot; a team's own job types are declared the same
way in their own package and reach the API through the catalogue (:mod:`offload.catalogue`).
The API imports these built-in contracts to validate their payloads with the full models.
"""

from __future__ import annotations

import importlib
import pkgutil

from offload.contracts._base import (
    MAX_BROKER_PRIORITY,
    Concurrency,
    JobContract,
    Payload,
    Priority,
    RetryPolicy,
    SubmissionPolicy,
    pydantic_errors,
)
from offload.contracts.ops import SCHEDULES, Schedule
from offload.contracts.registry import Registry
from offload.contracts.system import SYSTEM_QUEUE


def _built_in() -> Registry:
    """Every ``CONTRACTS`` tuple of this package's modules, the system ones first."""
    found = []
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: (m.name != "system", m.name)):
        contracts = getattr(importlib.import_module(f"{__name__}.{module.name}"), "CONTRACTS", ())
        found += list(contracts)
    return Registry(found)


#: The built-in contracts (system, email, webhooks, media, reports, maintenance), found, not listed.
BUILT_IN = _built_in()

__all__ = [
    "BUILT_IN",
    "MAX_BROKER_PRIORITY",
    "SCHEDULES",
    "SYSTEM_QUEUE",
    "Concurrency",
    "JobContract",
    "Payload",
    "Priority",
    "Registry",
    "RetryPolicy",
    "Schedule",
    "SubmissionPolicy",
    "pydantic_errors",
]
