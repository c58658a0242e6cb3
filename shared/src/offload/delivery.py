"""Who published a delivered message: the AMQP properties a worker's consumer hands to the runtime.

Dramatiq decodes a delivery's body into a message and drops its AMQP properties. Offload needs
two of them: ``user_id``, which RabbitMQ validates equals the login of the connection that
published the message (so it says who published it, whatever the body claims), and the
``headers`` table. The worker broker's consumer (:class:`StampingConsumer`) copies them into the
message's options under :data:`RESERVED`, always replacing whatever the body put there, and
:func:`delivery_of` reads them back.

One case keeps an earlier identity: a message one of Offload's own (trusted) processes published
again on behalf of its first publisher (Dramatiq's retry of a delivery that met an unreachable
Redis re-publishes the decoded message, this block included, as the worker's user; an admin's
requeue of a dead letter publishes it with the letter's ``user_id`` put there, :func:`forwarded`). Then
``publisher`` stays the first publisher's, so a re-publication never turns a stranger's message
into one of Offload's own. A body that names a publisher itself is believed only if a trusted
user delivered it, and the only bodies trusted users publish with this block are ones a
consumer stamped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dramatiq.brokers.rabbitmq import _RabbitmqConsumer

#: The message option that carries the delivery's properties (never trusted from a body).
RESERVED = "offload_delivery"
#: Header values longer than this are cut (they are shown, never interpreted, by Offload).
_MAX_HEADER = 1024


@dataclass(frozen=True)
class Delivery:
    """The AMQP facts of one delivery.

    ``user_id`` is the property as RabbitMQ delivered it (None when the publisher set none);
    ``publisher`` is whose message it is: ``user_id``, or the first publisher of a message a
    trusted process re-published.
    """

    user_id: str | None
    publisher: str | None
    headers: dict[str, Any]


def stamp(options: dict[str, Any], properties: Any, trusted: frozenset[str]) -> None:
    """Write the delivery's properties into ``options`` (a decoded message's), replacing the body's."""
    user = getattr(properties, "user_id", None)
    user = user if isinstance(user, str) and user else None
    publisher = user
    earlier = options.get(RESERVED)
    if user in trusted and isinstance(earlier, dict) and isinstance(earlier.get("publisher"), str):
        publisher = earlier["publisher"]
    headers = getattr(properties, "headers", None)
    options[RESERVED] = {
        "user_id": user,
        "publisher": publisher,
        "headers": _plain(headers) if isinstance(headers, dict) else {},
    }


def delivery_of(message: Any) -> Delivery:
    """The delivery facts of ``message`` (a Dramatiq message or proxy); all None if it was not stamped."""
    options = getattr(message, "options", None)
    block = options.get(RESERVED) if isinstance(options, dict) else None
    if not isinstance(block, dict):
        return Delivery(None, None, {})
    user, publisher, headers = block.get("user_id"), block.get("publisher"), block.get("headers")
    return Delivery(
        user if isinstance(user, str) else None,
        publisher if isinstance(publisher, str) else None,
        headers if isinstance(headers, dict) else {},
    )


def forwarded(body: bytes, properties: Any) -> bytes:
    """``body`` (a message taken off a queue, a dead letter) to publish again on behalf of its first publisher.

    The block under :data:`RESERVED` is replaced by the delivery's own ``user_id``, so that when one
    of Offload's own processes publishes it again (an admin requeuing a dead letter) the message
    is still its first publisher's, with that publisher's rights (see :func:`stamp`), not
    Offload's. A body that is not a JSON object with ``options`` is returned as it is (nothing runs it).
    """
    try:
        message = json.loads(body)
    except ValueError:
        return body
    if not isinstance(message, dict) or not isinstance(message.get("options"), dict):
        return body
    user = getattr(properties, "user_id", None)
    message["options"][RESERVED] = {"publisher": user if isinstance(user, str) and user else None}
    return json.dumps(message, separators=(",", ":")).encode()


def _plain(value: Any) -> Any:
    """A header value as JSON can carry it (the message is encoded again when Dramatiq retries it)."""
    if isinstance(value, dict):
        return {str(k)[:_MAX_HEADER]: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")[:_MAX_HEADER]
    return str(value)[:_MAX_HEADER]


class StampingConsumer(_RabbitmqConsumer):
    """Dramatiq's RabbitMQ consumer, stamping each message with its delivery's properties (:func:`stamp`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._properties: Any = None
        self.iterator = self._remembering(self.iterator)

    def _remembering(self, deliveries: Iterator[Any]) -> Iterator[Any]:
        for delivery in deliveries:
            self._properties = delivery[1]
            yield delivery

    def __next__(self) -> Any:
        """The next message, its options stamped; None when none came (Dramatiq's contract)."""
        self._properties = None
        proxy = super().__next__()  # type: ignore[no-untyped-call]
        if proxy is not None:
            stamp(proxy._message.options, self._properties, getattr(self.broker, "trusted_users", frozenset()))
        return proxy
