"""The worker side of Offload: the runtime around handlers, system jobs, the due-job promoter."""

from __future__ import annotations

from offload.errors import JobFailed
from offload.worker.app import build_worker, declare_actor
from offload.worker.context import JobContext, Resources
from offload.worker.runtime import Handler, Runtime

__all__ = ["Handler", "JobContext", "Resources", "JobFailed", "Runtime", "build_worker", "declare_actor"]
