"""Web push notifications, consumed by services/worker-email (the notifications service).

A ``push.send`` job notifies one user, or a bounded list of users, on every browser they
subscribed (``POST /v1/push/subscriptions``). Each message is encrypted for its subscription
(RFC 8291, ``aes128gcm``) and signed with the deployment's VAPID key (RFC 8292). Push services
refuse an encrypted body over :data:`MAX_ENCRYPTED_BYTES` (413), so the payload model computes
that size when it is validated: a notification too large is a 422 at submission, never a failed
job. The model is pure data; the worker's handler (``offload_email.push``) does the sending.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from offload.contracts._base import JobContract, Payload, RetryPolicy

PUSH_QUEUE = "push"

#: The largest encrypted message push services accept (RFC 8030 §7.2 lets them refuse more; FCM,
#: Mozilla's autopush and Apple's all stop at 4096 bytes).
MAX_ENCRYPTED_BYTES = 4096
#: What ``aes128gcm`` adds to a message of one record (RFC 8188 §2, RFC 8291 §4): the header (salt
#: 16, record size 4, key id length 1, the sender's public key 65), the padding delimiter (1) and
#: the AEAD tag (16).
ENCRYPTION_OVERHEAD = 16 + 4 + 1 + 65 + 1 + 16
#: Users one ``push.send`` may name, and subscriptions one user may keep.
MAX_USERS = 100
MAX_SUBSCRIPTIONS_PER_USER = 10

#: An application's user id: what subscriptions are filed under (letters, digits, ``._@+-``).
USER_ID_PATTERN = r"^[A-Za-z0-9._@+-]+$"
UserId = Annotated[str, Field(min_length=1, max_length=128, pattern=USER_ID_PATTERN)]
#: A link the notification opens or shows: an absolute ``https`` URL or a path of the app's own site.
Link = Annotated[str, Field(max_length=2048, pattern=r"^(https://[^\s]+|/([^/\s][^\s]*)?)$")]


def encrypted_size(message: bytes) -> int:
    """The size of ``message`` once encrypted as one ``aes128gcm`` record (what push services measure)."""
    return len(message) + ENCRYPTION_OVERHEAD


class SendPushPayload(Payload):
    """A notification to every subscription of one user (``user_id``) or of several (``user_ids``)."""

    user_id: UserId | None = None
    user_ids: list[UserId] | None = Field(default=None, min_length=1, max_length=MAX_USERS)
    title: str = Field(min_length=1, max_length=500)
    body: str = Field(default="", max_length=4000)
    url: Link | None = Field(default=None, description="Opened when the user clicks the notification.")
    icon: Link | None = None
    ttl: int = Field(
        default=86_400,
        ge=0,
        le=2_419_200,
        description="Seconds the push service keeps the message for an offline browser (0: deliver now or drop).",
    )
    urgency: Literal["very-low", "low", "normal", "high"] = "normal"
    topic: str | None = Field(
        default=None,
        max_length=32,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="A newer message with the same topic replaces one not yet delivered (RFC 8030 §5.4).",
    )

    @model_validator(mode="after")
    def _one_audience_and_a_message_that_fits(self) -> SendPushPayload:
        if (self.user_id is None) == (self.user_ids is None):
            raise PydanticCustomError("push_audience", "give exactly one of user_id and user_ids")
        size = encrypted_size(self.message())
        if size > MAX_ENCRYPTED_BYTES:
            raise PydanticCustomError(
                "push_message_too_large",
                "title, body, url and icon make a message of {size} bytes encrypted; push services take at most "
                "{limit}",
                {"size": size, "limit": MAX_ENCRYPTED_BYTES},
            )
        return self

    def users(self) -> list[str]:
        """The users to notify, each once, in the order given."""
        return list(dict.fromkeys(self.user_ids or [self.user_id or ""]))

    def message(self) -> bytes:
        """What the browser's service worker receives: the notification as compact JSON (UTF-8)."""
        fields = {"title": self.title, "body": self.body, "url": self.url, "icon": self.icon}
        shown = {name: value for name, value in fields.items() if value}
        return json.dumps(shown, ensure_ascii=False, separators=(",", ":")).encode()


class PushOutcome(BaseModel):
    """What happened to one subscription."""

    subscription_id: str
    user_id: str
    status: Literal["sent", "gone", "rejected", "failed"] = Field(
        description=(
            "`sent`: the push service took it; `gone`: it answered 404 or 410 and the subscription was removed; "
            "`rejected`: another 4xx; `failed`: it kept failing (5xx, 429, no answer) until the retries ran out, "
            "or its endpoint is not allowed."
        )
    )
    http_status: int | None = None
    detail: str | None = None


class SendPushResult(BaseModel):
    """What ``push.send`` returns: a count per outcome and one entry per subscription."""

    sent: int
    gone: int
    rejected: int
    failed: int
    #: One entry per subscription: the users in the order given, each user's subscriptions by id.
    subscriptions: list[PushOutcome]


def _b64url(value: str, field_name: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", value):
        raise PydanticCustomError("invalid_key", "{field} is not base64url", {"field": field_name})
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise PydanticCustomError("invalid_key", "{field} is not base64url", {"field": field_name}) from None


#: NIST P-256 (SEC 2 §2.4.2): y² = x³ - 3x + b over the prime field p.
_P = 2**256 - 2**224 + 2**192 + 2**96 - 1
_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B


def on_p256(point: bytes) -> bool:
    """Whether ``point`` is an uncompressed P-256 public key (``0x04 || x || y``) on the curve."""
    if len(point) != 65 or point[0] != 4:
        return False
    x, y = int.from_bytes(point[1:33], "big"), int.from_bytes(point[33:], "big")
    return x < _P and y < _P and (y * y - (x * x * x - 3 * x + _B)) % _P == 0


class SubscriptionKeys(BaseModel):
    """A browser's keys for one subscription (``PushSubscription.toJSON().keys``)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    p256dh: str = Field(max_length=100, description="The browser's P-256 public key: 65 bytes uncompressed, base64url.")
    auth: str = Field(max_length=32, description="The authentication secret: 16 bytes, base64url.")

    @field_validator("p256dh")
    @classmethod
    def _a_p256_point(cls, value: str) -> str:
        if not on_p256(_b64url(value, "p256dh")):
            raise PydanticCustomError("invalid_key", "not an uncompressed P-256 point (65 bytes, base64url)")
        return value

    @field_validator("auth")
    @classmethod
    def _sixteen_bytes(cls, value: str) -> str:
        if len(_b64url(value, "auth")) != 16:
            raise PydanticCustomError("invalid_key", "not 16 bytes (base64url)")
        return value


class NewPushSubscription(BaseModel):
    """What a browser's ``pushManager.subscribe()`` gives (its ``toJSON()``), plus the app's user id."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    user_id: UserId
    endpoint: str = Field(max_length=2048, description="The push service's URL for this browser (https).")
    keys: SubscriptionKeys
    expirationTime: int | None = Field(default=None, description="As the browser gives it; not used.")


def subscription_info(endpoint: str, keys: dict[str, Any] | SubscriptionKeys) -> dict[str, Any]:
    """A subscription in the shape ``pywebpush`` and browsers use: ``{"endpoint", "keys": {...}}``."""
    found = keys.model_dump() if isinstance(keys, SubscriptionKeys) else dict(keys)
    return {"endpoint": endpoint, "keys": {"p256dh": found["p256dh"], "auth": found["auth"]}}


SEND = JobContract(
    name="push.send",
    queue=PUSH_QUEUE,
    payload=SendPushPayload,
    result=SendPushResult,
    description=(
        "Sends a web push notification to every browser a user (or each of several users) subscribed; "
        "subscriptions that are gone are removed."
    ),
    retry=RetryPolicy(max_retries=5, max_retries_limit=8, min_backoff=2, max_backoff=600),
    time_limit=300,
)

CONTRACTS = (SEND,)
