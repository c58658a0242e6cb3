"""The worker's side of a job's trace: continue it from the message, time its wait in the queue.

The runtime calls :func:`delivery_span` around each delivery only while tracing is on
(``offload.tracing``); off, nothing here runs. The trace is read from the message body's
``options.offload.traceparent`` (``tracestate``), where Offload's publisher and any wire publisher
put it, or else from the delivery's AMQP ``traceparent`` header (what an instrumented AMQP client
sets; ``offload.delivery`` hands the headers over); a message with neither (or a malformed one)
starts a new trace.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from offload import tracing
from offload.delivery import delivery_of
from offload.tracing import SpanKind, TraceCarrier
from offload.wire import offload_options


def message_trace(message: Any) -> TraceCarrier | None:
    """The trace context of a Dramatiq message: its ``options.offload``'s, else its AMQP headers' (None: none)."""
    options = getattr(message, "options", None)
    block = offload_options(options) if isinstance(options, dict) else {}
    if block.get("traceparent"):
        return TraceCarrier.parse(block.get("traceparent"), block.get("tracestate") or "")
    headers = delivery_of(message).headers
    return TraceCarrier.parse(headers.get("traceparent"), headers.get("tracestate") or "")


@contextmanager
def delivery_span(job_type: str, queue: str, job_id: str, message: Any) -> Iterator[None]:
    """Spans of one delivery, children of the message's trace context.

    ``offload.queue_wait`` runs from the message's timestamp (its publish, or for a retry or a
    delayed job its record's creation) to now; ``offload.job`` (a consumer span) wraps the block,
    so the state writes and the handler's ``offload.run`` inside it are its children.
    """
    parent = message_trace(message) if message is not None else None
    attributes = {"offload.job_id": job_id, "offload.job_type": job_type, "messaging.destination.name": queue}
    timestamp = getattr(message, "message_timestamp", None)
    if isinstance(timestamp, int) and timestamp > 0:
        start_ns = min(timestamp * 1_000_000, time.time_ns())
        with tracing.span("offload.queue_wait", parent=parent, attributes=attributes, start_ns=start_ns):
            pass
    with tracing.span(f"offload.job {job_type}", kind=SpanKind.CONSUMER, parent=parent, attributes=attributes):
        yield
