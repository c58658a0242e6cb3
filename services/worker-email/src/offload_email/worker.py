"""Worker entry point: ``dramatiq offload_email.worker:setup --queues email system``."""

from __future__ import annotations

from dramatiq.brokers.rabbitmq import RabbitmqBroker

from offload.settings import load_settings
from offload.worker import Handler, build_worker

#: The domain queues this worker consumes (besides ``system``).
QUEUES = ("email",)

#: Handlers by job type; the domain jobs arrive with their issue.
HANDLERS: dict[str, Handler] = {}


def setup() -> RabbitmqBroker:
    """Build this worker's broker and actors; the Dramatiq CLI calls it in each worker process."""
    return build_worker(load_settings(), queues=QUEUES, handlers=HANDLERS)
