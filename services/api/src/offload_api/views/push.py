"""``/v1/push``: browsers' web push subscriptions per tenant and user, and the VAPID public key.

A page calls ``pushManager.subscribe({applicationServerKey})`` with the key from
``GET /v1/push/vapid-public-key`` and posts the subscription it gets (its ``toJSON()``) here with
the app's ``user_id``; ``push.send`` jobs then reach every browser a user subscribed. The push
workers hold the VAPID private key and register its public half in Redis; this API never sees the
private key. Subscriptions belong to the tenant of the API key, as jobs do.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError

from offload import problems
from offload.contracts import pydantic_errors
from offload.contracts.push import MAX_SUBSCRIPTIONS_PER_USER, USER_ID_PATTERN, NewPushSubscription
from offload.errors import NotFound, PushNotConfigured, ValidationFailed
from offload.publish.publisher import settings_url_policy
from offload.status import redis_errors
from offload.status.push import PushSubscriptions
from offload_api.auth import caller, requires
from offload_api.bodies import json_body
from offload_api.extension import services
from offload_api.openapi_meta import Operation, documented

bp = Blueprint("push", __name__, url_prefix="/v1/push")

#: The views' own errors; the key's (401, 403, 429) are added where a key is checked (``offload_api.openapi``).
_ERRORS = {503: ("Redis unavailable.", "Error")}
_USER_ID = (
    "user_id",
    {"type": "string", "minLength": 1, "maxLength": 128, "pattern": USER_ID_PATTERN},
    "The application's user id the subscriptions are filed under.",
)


def _subscriptions() -> PushSubscriptions:
    return PushSubscriptions(services().store)


@bp.get("/vapid-public-key")
@documented(
    Operation(
        "Get the VAPID public key browsers subscribe with",
        description=(
            "The `applicationServerKey` to pass to `pushManager.subscribe()`: the public half of the key the push "
            "workers sign with (P-256, uncompressed, base64url). 404 `push_not_configured` until a push worker "
            "with a key (`OFFLOAD_VAPID_PRIVATE_KEY`) has started."
        ),
        tag="push",
        public=True,
        responses={
            200: ("The public key.", "VapidPublicKey"),
            404: ("No push worker has registered a key yet (push_not_configured).", "Error"),
            503: ("Redis unavailable.", "Error"),
        },
    )
)
def vapid_public_key() -> Response:
    """The key a page hands to ``pushManager.subscribe()``."""
    with redis_errors():
        key = _subscriptions().public_key()
    if key is None:
        raise PushNotConfigured("No push worker has registered a VAPID key yet (OFFLOAD_VAPID_PRIVATE_KEY).")
    return jsonify({"public_key": key})


@bp.post("/subscriptions")
@requires("client")
@documented(
    Operation(
        "Save a browser's push subscription for a user",
        description=(
            "Send what `pushManager.subscribe()` gave (its `toJSON()`: `endpoint`, `keys.p256dh`, `keys.auth`) and "
            "the app's `user_id`. The endpoint must be an https URL the SSRF guard allows; `p256dh` is a P-256 "
            f"point (65 bytes) and `auth` 16 bytes, both base64url. A user keeps at most {MAX_SUBSCRIPTIONS_PER_USER} "
            "subscriptions: the oldest gives way. The same endpoint again replaces its subscription (200)."
        ),
        tag="push",
        request="NewPushSubscription",
        responses={
            201: ("Saved.", "PushSubscription"),
            200: ("This browser's subscription was replaced.", "PushSubscription"),
            400: ("Malformed JSON.", "Error"),
            413: ("Body too large.", "Error"),
            415: ("Not JSON.", "Error"),
            422: ("A field is invalid; `errors` names it.", "Error"),
            **_ERRORS,
        },
    )
)
def add_subscription() -> tuple[Response, int]:
    """File the browser's subscription under the user, for the caller's tenant."""
    body = json_body()
    try:
        new = NewPushSubscription.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed(
            "The subscription is not valid.", errors=pydantic_errors(exc, body), code="validation_failed"
        ) from None
    policy = settings_url_policy(services().settings)  # https only in production
    policy.check(new.endpoint, field_name="endpoint")
    with redis_errors():
        saved, created = _subscriptions().add(
            caller().tenant, new.user_id, new.endpoint, new.keys.p256dh, new.keys.auth
        )
    return jsonify(saved.public()), 201 if created else 200


@bp.get("/subscriptions")
@requires("reader")
@documented(
    Operation(
        "List a user's push subscriptions",
        description="The browsers `user_id` subscribed in your tenant, oldest first (their keys are never shown).",
        tag="push",
        query=(_USER_ID,),
        responses={
            200: ("The user's subscriptions.", "PushSubscriptionList"),
            422: ("No user_id.", "Error"),
            **_ERRORS,
        },
    )
)
def list_subscriptions() -> Response:
    """The user's subscriptions in the caller's tenant."""
    user_id = _user_id(request.args.get("user_id"))
    with redis_errors():
        found = _subscriptions().of_user(caller().tenant, user_id)
    return jsonify({"subscriptions": [sub.public() for sub in found]})


@bp.delete("/subscriptions/<sub_id>")
@requires("client")
@documented(
    Operation(
        "Remove a push subscription",
        description="The browser stops getting this tenant's notifications (e.g. on sign-out).",
        tag="push",
        responses={
            200: ("Removed: the subscription it was.", "PushSubscription"),
            404: ("Your tenant has no subscription by this id.", "Error"),
            **_ERRORS,
        },
    )
)
def remove_subscription(sub_id: str) -> Response:
    """Remove one of the caller's tenant's subscriptions."""
    with redis_errors():
        removed = _subscriptions().remove(caller().tenant, sub_id) if len(sub_id) <= 64 else None
    if removed is None:
        raise NotFound("Your tenant has no push subscription by this id.")
    return jsonify(removed.public())


def _user_id(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(USER_ID_PATTERN, value) or len(value) > 128:
        raise ValidationFailed(
            "Give the user's id as ?user_id= (1 to 128 letters, digits or ._@+-).",
            errors=[problems.parameter("user_id", "invalid_user_id", "1 to 128 letters, digits or ._@+-")],
        )
    return value
