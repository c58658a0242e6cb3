"""Publishing jobs: the Python SDK, the confirming AMQP publisher and the wire format."""

from __future__ import annotations

from offload.publish.amqp import ConfirmingPublisher
from offload.publish.publisher import Publisher
from offload.publish.results import BatchSubmitted, FlowSubmitted, Submitted, SubmittedNode
from offload.publish.transport import MemoryTransport, Transport
from offload.wire import WIRE_VERSION, WireMessage, encode_message

__all__ = [
    "WIRE_VERSION",
    "BatchSubmitted",
    "ConfirmingPublisher",
    "FlowSubmitted",
    "MemoryTransport",
    "Publisher",
    "Submitted",
    "SubmittedNode",
    "Transport",
    "WireMessage",
    "encode_message",
]
