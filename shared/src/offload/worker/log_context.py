"""Job fields on every log line written while a worker processes a message, Dramatiq's own included."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

from dramatiq.middleware import Middleware

from offload import tracing
from offload.logs import job_context
from offload.wire import offload_options
from offload.worker.traced import message_trace


class JobLogContext(Middleware):
    """Set the job's id, type and tenant for the logs of the thread processing its message.

    The runtime adds the attempt once it is known; lines Dramatiq writes around the actor (a failure,
    a retry, a dead letter) carry the job fields too.
    """

    def __init__(self) -> None:
        self._tokens = threading.local()

    def before_process_message(self, _broker: Any, message: Any) -> None:
        """Attach the job's fields to this thread's log lines."""
        tenant = offload_options(message.options).get("tenant")
        fields = {"job_id": message.message_id, "job_type": message.actor_name}
        if isinstance(tenant, str):
            fields["tenant"] = tenant
        if tracing.enabled():  # Dramatiq's own lines about the job carry its trace too
            trace = message_trace(message)
            if trace is not None:
                fields["trace_id"] = trace.trace_id
        self._tokens.token = job_context.set(fields)

    def after_process_message(
        self,
        _broker: Any,
        _message: Any,
        *,
        result: Any = None,  # noqa: ARG002 - Dramatiq's hook signature
        exception: BaseException | None = None,  # noqa: ARG002
    ) -> None:
        """Detach them once Dramatiq is done with the message."""
        self._reset()

    def after_skip_message(self, _broker: Any, _message: Any) -> None:
        """Detach them for a skipped message too."""
        self._reset()

    def _reset(self) -> None:
        token: contextvars.Token[dict[str, str] | None] | None = getattr(self._tokens, "token", None)
        if token is not None:
            job_context.reset(token)
            self._tokens.token = None
