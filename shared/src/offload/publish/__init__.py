"""Publishing jobs: the Python SDK, the confirming AMQP publisher and the wire format."""

from __future__ import annotations

from offload.publish.amqp import ConfirmingPublisher
from offload.publish.publisher import BatchSubmitted, Publisher, Submitted
from offload.wire import WIRE_VERSION, WireMessage, encode_message

__all__ = [
    "WIRE_VERSION",
    "BatchSubmitted",
    "ConfirmingPublisher",
    "Publisher",
    "Submitted",
    "WireMessage",
    "encode_message",
]
