"""Worker entry point: ``dramatiq offload_reports.worker:setup --queues reports system``."""

from __future__ import annotations

from dramatiq.brokers.rabbitmq import RabbitmqBroker

from offload.settings import load_settings
from offload.worker import Handler, build_worker

#: The domain queues this worker consumes (besides ``system``).
QUEUES = ("reports",)

#: The job types this worker serves (besides the system ones); the domain jobs arrive with their issue.
JOB_TYPES: tuple[str, ...] = ()
HANDLERS: dict[str, Handler] = {}


def setup() -> RabbitmqBroker:
    """Build this worker's broker and actors; the Dramatiq CLI calls it in each worker process."""
    return build_worker(load_settings(), queues=QUEUES, handlers=HANDLERS)
