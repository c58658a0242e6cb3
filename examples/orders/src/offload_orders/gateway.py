"""The payment gateway's client: one charge per order, made at most once by its idempotency key.

The gateway's API (the shape of Stripe's, and of :mod:`offload_orders.fake_gateway`)::

    POST /charges   Idempotency-Key: order-<order id>
    {"amount_cents": 2599, "currency": "EUR", "token": "tok_visa", "reference": "<order id>"}

answers 201 (or 200 for a key it has seen) with ``{"id": "ch_...", "status": "succeeded"}``,
402 with ``{"code": "card_declined"}`` when the card is refused, and 5xx when it is in trouble.
The key makes a retried or redelivered charge return the first one instead of charging again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests


class GatewayUnavailable(Exception):
    """The gateway did not answer, timed out or answered 5xx: the charge may be tried again."""


class PaymentDeclined(Exception):
    """The gateway refused the charge (402): retrying cannot help."""

    def __init__(self, code: str) -> None:
        super().__init__(f"The payment was declined ({code}).")
        self.code = code


@dataclass(frozen=True)
class Charge:
    """A charge the gateway made (or had made for the same key)."""

    id: str
    amount_cents: int


class PaymentGateway:
    """Charges cards through the gateway at ``base_url``, one HTTP session per worker process.

    Args:
        base_url: the gateway's base URL.
        timeout: seconds a charge may take (connecting has at most 1 s).
    """

    def __init__(self, base_url: str, *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def charge(self, *, amount_cents: int, currency: str, token: str, reference: str, idempotency_key: str) -> Charge:
        """Charge ``amount_cents``; the same ``idempotency_key`` never charges twice.

        Raises:
            PaymentDeclined: the card was refused.
            GatewayUnavailable: no answer, a timeout, a 5xx, or an answer that makes no sense.
        """
        body = {"amount_cents": amount_cents, "currency": currency, "token": token, "reference": reference}
        try:
            response = self.session.post(
                f"{self.base_url}/charges",
                json=body,
                headers={"Idempotency-Key": idempotency_key},
                timeout=(min(1.0, self.timeout), self.timeout),
            )
        except requests.RequestException as exc:
            raise GatewayUnavailable(f"The payment gateway did not answer ({type(exc).__name__}).") from None
        if response.status_code == 402:
            raise PaymentDeclined(str(_json(response).get("code") or "declined"))
        if response.status_code not in (200, 201):
            raise GatewayUnavailable(f"The payment gateway answered {response.status_code}.")
        answer = _json(response)
        if not isinstance(answer.get("id"), str):
            raise GatewayUnavailable("The payment gateway's answer has no charge id.")
        return Charge(id=answer["id"], amount_cents=int(answer.get("amount_cents", amount_cents)))

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}
