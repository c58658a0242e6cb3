"""The webhook Offload sends, as the OpenAPI document's ``webhooks`` section (OpenAPI 3.1).

When a job submitted with a ``callback_url`` ends, the ``webhook.deliver`` job (served by
``offload_email.webhooks``) POSTs an envelope around the job's record there, signed per Standard
Webhooks (:mod:`offload.webhooks`). This describes that request: its headers, its body
(:class:`offload_api.schemas.WebhookEvent`) and what each answer of the receiver leads to. The
API cannot import the worker that sends it, so ``tests/webhooks`` checks a real delivery against
this description.
"""

from __future__ import annotations

from typing import Any

from offload.contracts import Registry
from offload.webhooks import TOLERANCE

#: The name of the webhook in the document (``webhooks.<name>``).
NAME = "jobEnded"
#: Base64 of one HMAC-SHA256 (32 bytes): 43 characters and one ``=``.
_SIGNATURE = r"v1,[A-Za-z0-9+/]{43}="
#: The ``User-Agent`` of every delivery (``offload_email.webhooks.USER_AGENT``).
USER_AGENT = "Offload-Webhooks/1"

_HEADERS: tuple[tuple[str, dict[str, Any], str], ...] = (
    (
        "webhook-id",
        {"type": "string", "format": "uuid"},
        "The delivery's id, the same on every attempt of one delivery: drop a delivery whose id you have "
        "already handled. It is the job's `webhook_id`, and the id of the `webhook.deliver` job whose record "
        "(`GET /v1/jobs/{webhook-id}`) shows each attempt.",
    ),
    (
        "webhook-timestamp",
        {"type": "string", "pattern": "^[0-9]+$"},
        f"When this attempt was signed, in Unix seconds. Refuse a delivery more than {TOLERANCE // 60} minutes "
        "away from your clock: it may be a replay.",
    ),
    (
        "webhook-signature",
        {"type": "string", "pattern": f"^{_SIGNATURE}( {_SIGNATURE})*$"},
        "Space-separated `v1,<base64>` signatures, one per active secret of your tenant (two for a day after a "
        "rotation): each is the base64 HMAC-SHA256, keyed with the secret's bytes (the base64 after `whsec_`), of "
        "`{webhook-id}.{webhook-timestamp}.{body}`, the body byte for byte. Accept the delivery if one matches.",
    ),
    ("User-Agent", {"type": "string", "const": USER_AGENT}, "Always this."),
)


def webhooks(registry: Registry) -> dict[str, Any]:
    """The ``webhooks`` section: the one webhook Offload sends, with its retry policy from ``registry``.

    Empty when ``registry`` has no ``webhook.deliver`` contract: then nothing sends it.
    """
    if "webhook.deliver" not in registry:
        return {}
    retry = registry.get("webhook.deliver").retry
    description = (
        "When a job submitted with `options.callback_url` ends, Offload POSTs this to that URL, signed per "
        "[Standard Webhooks](https://www.standardwebhooks.com/) with your tenant's secret (`GET "
        "/v1/webhooks/secret`): verify it with any Standard Webhooks library, or check `webhook-signature` by "
        "hand, before you trust it. The body is JSON (`Content-Type: application/json`): an envelope whose "
        "`data` is the job's record. Redirects are not followed. A receiver that does not answer within the "
        "deployment's webhook timeout (10 s unless `OFFLOAD_WEBHOOK_TIMEOUT` says otherwise), cannot be "
        f"reached, or answers 408, 429 or 5xx is tried again with backoff, up to {retry.max_retries} times "
        f"({retry.min_backoff:g} s at first, doubling up to {retry.max_backoff:g} s; 429's `Retry-After` is "
        "honoured); after that the delivery is `dead`. Each attempt has a fresh `webhook-timestamp` and "
        "`timestamp` and the record as it is then, and the same `webhook-id`. While a receiver's host keeps "
        "failing, deliveries to it wait a while before they are tried (without counting as an attempt)."
    )
    return {
        NAME: {
            "post": {
                "operationId": "webhook_job_ended",
                "summary": "A job with a callback_url ended",
                "description": description,
                "tags": ["webhooks"],
                "security": [],
                "parameters": [
                    {"name": name, "in": "header", "required": True, "schema": schema, "description": text}
                    for name, schema, text in _HEADERS
                ],
                "requestBody": {
                    "required": True,
                    "description": "The event, as JSON (`Content-Type: application/json`).",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WebhookEvent"}}},
                },
                "responses": {
                    "2XX": {"description": "Received: the delivery is done. The answer's body is not used."},
                    "3XX": {"description": "Not followed: the delivery fails (webhook_redirect), not retried."},
                    "408": {"description": "Tried again later, with backoff."},
                    "410": {
                        "description": "Gone: the delivery fails, and so does every delivery to this URL for the next "
                        "7 days, without a request (endpoint_disabled)."
                    },
                    "429": {"description": "Tried again later: after Retry-After if it says, else with backoff."},
                    "4XX": {"description": "Refused: the delivery fails (webhook_rejected), not retried."},
                    "5XX": {"description": "Tried again later, with backoff."},
                },
            }
        }
    }
