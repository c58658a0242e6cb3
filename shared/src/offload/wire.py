"""The wire format: the Dramatiq JSON message Offload publishes, and what it reads back.

Any service, in any language, can publish a job by sending this JSON body to the job type's queue
(default exchange, routing key = queue name, ``delivery_mode=2``, optional AMQP ``priority`` 1-3)::

    {
      "queue_name": "system",                 # the contract's queue
      "actor_name": "system.sleep",           # the job type
      "args": [],
      "kwargs": {"job_id": "<uuid4>", "payload": {"ms": 500}},
      "options": {"broker_priority": 2, "offload": {"v": 1, "tenant": "acme"}},
      "message_id": "<the same uuid4>",
      "message_timestamp": 1767225600000      # milliseconds since the epoch
    }

A message whose job has no record (a publisher that did not write one) is adopted by the worker
after the checks an HTTP submission gets (``offload.worker.adoption``): it creates the record from
``options.offload`` (``tenant``, default ``"default"``; optional ``max_retries``), so the job is
listed and trackable like any other, or records why it may not run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from offload.contracts import Priority

#: Version of the ``options.offload`` block.
WIRE_VERSION = 1


def encode_message(
    *,
    job_id: str,
    job_type: str,
    queue: str,
    payload: dict[str, Any],
    tenant: str,
    broker_priority: int,
    timestamp_ms: int,
    traceparent: str = "",
    tracestate: str = "",
) -> bytes:
    """The message body, byte-compatible with ``dramatiq.Message.encode()`` under the JSON encoder.

    ``traceparent``/``tracestate`` (W3C trace context, docs/tracing.md) go into ``options.offload``
    when given: the worker continues the job's trace from them.
    """
    block: dict[str, Any] = {"v": WIRE_VERSION, "tenant": tenant}
    if traceparent:
        block["traceparent"] = traceparent
        if tracestate:
            block["tracestate"] = tracestate
    message = {
        "queue_name": queue,
        "actor_name": job_type,
        "args": [],
        "kwargs": {"job_id": job_id, "payload": payload},
        "options": {"broker_priority": broker_priority, "offload": block},
        "message_id": job_id,
        "message_timestamp": timestamp_ms,
    }
    return json.dumps(message, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class WireMessage:
    """The routing facts of an encoded message."""

    queue: str
    priority: int | None
    body: bytes

    @classmethod
    def decode(cls, body: bytes) -> WireMessage:
        """Read the queue and priority back out of a stored message body.

        Raises:
            ValueError: the body is not an Offload message.
        """
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("queue_name"), str):
            raise ValueError("Not an Offload message.")
        priority = (data.get("options") or {}).get("broker_priority")
        return cls(queue=data["queue_name"], priority=priority if isinstance(priority, int) else None, body=body)


def offload_options(options: dict[str, Any]) -> dict[str, Any]:
    """The ``options.offload`` block of a decoded message ({} when a foreign publisher left it out)."""
    block = options.get("offload")
    return block if isinstance(block, dict) else {}


#: What a recorded job's message is rebuilt from, in this order (the status store's scripts return
#: them so): the record keeps these fields, not the message, which is most of a short job's size.
#: ``message`` is the message itself, kept by records written before (layout 1); ``traceparent`` and
#: ``tracestate`` the job's trace context (docs/tracing.md), so that a retry stays in its trace.
MESSAGE_FIELDS = (
    "id", "type", "queue", "tenant", "priority", "payload", "created_at", "message", "traceparent", "tracestate"
)  # fmt: skip


def stored_message(values: Sequence[str | None]) -> bytes:
    """The message of a recorded job, from its :data:`MESSAGE_FIELDS` values (in that order).

    Byte for byte what the publisher sent for a job it recorded (the payload is stored as the
    message carried it); a job adopted from the wire gets its normalised form.

    Raises:
        ValueError: the values cannot make a message (a record without its type or payload).
    """
    job_id, job_type, queue, tenant, priority, payload, created_at, legacy, *trace = (v or "" for v in values)
    if legacy:
        return legacy.encode()
    if not (job_id and job_type and queue and payload and created_at):
        raise ValueError(f"Job {job_id or '?'} has no stored message.")
    return encode_message(
        job_id=job_id,
        job_type=job_type,
        queue=queue,
        payload=json.loads(payload),
        tenant=tenant or "default",
        broker_priority=Priority(priority or "normal").broker_priority,
        timestamp_ms=int(created_at),
        traceparent=trace[0] if trace else "",
        tracestate=trace[1] if len(trace) > 1 else "",
    )
