"""Signed webhooks per the Standard Webhooks spec: signing for senders, ``verify`` for receivers.

A delivery carries three headers: ``webhook-id`` (the same on every retry, so receivers can drop
duplicates), ``webhook-timestamp`` (Unix seconds, fresh on each attempt) and ``webhook-signature``
(space-separated ``v1,<base64 HMAC-SHA256>`` entries over ``"{id}.{timestamp}.{body}"``, one per
active secret, so a secret can be rotated without a gap). Secrets look like ``whsec_<base64>``.

Receivers written in Python call :func:`verify` with their secret(s); it compares in constant
time, refuses timestamps more than five minutes away, and with a Redis client reports replays.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any

from offload.errors import WebhookVerificationError
from offload.numbers import whole_number

SECRET_PREFIX = "whsec_"
#: Seconds a delivery's timestamp may be away from the receiver's clock.
TOLERANCE = 5 * 60


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature entry."""
    digest = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign(secrets_: Iterable[str], msg_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The three headers of a delivery signed with every secret in ``secrets_`` (current first)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": " ".join(signature(s, msg_id, stamp, body) for s in secrets_),
    }


def verify(
    secrets_: str | Iterable[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    replay_guard: Any = None,
) -> str:
    """Check a delivery and return its ``webhook-id``.

    Args:
        secrets_: the receiver's secret, or several during a rotation.
        headers: the request headers (looked up case-insensitively).
        body: the raw request body, byte for byte (not re-serialised JSON).
        now: the current time, for tests.
        replay_guard: optionally a Redis client; a ``webhook-id`` seen in the last five minutes is
            then refused as a replay.

    Raises:
        WebhookVerificationError: ``invalid_signature``, ``timestamp_out_of_tolerance`` or ``duplicate``.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, given = (lowered.get(h, "") for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    sent_at = whole_number(stamp)
    if not msg_id or sent_at is None or not given:
        raise WebhookVerificationError("The webhook headers are missing or malformed.")
    if abs((time.time() if now is None else now) - sent_at) > TOLERANCE:
        raise WebhookVerificationError(
            "The webhook timestamp is too old or too new.", code="timestamp_out_of_tolerance"
        )
    candidates = [s.partition(",")[2] for s in given.split() if s.startswith("v1,")]
    keys = [secrets_] if isinstance(secrets_, str) else list(secrets_)
    expected = [signature(k, msg_id, sent_at, body).partition(",")[2] for k in keys]
    if not any(hmac.compare_digest(c.encode(), e.encode()) for c in candidates for e in expected):
        raise WebhookVerificationError("The webhook signature does not match.")
    if replay_guard is not None and not replay_guard.set(f"offload:webhook-seen:{msg_id}", "1", nx=True, ex=TOLERANCE):
        raise WebhookVerificationError("This webhook was already received.", code="duplicate")
    return msg_id
