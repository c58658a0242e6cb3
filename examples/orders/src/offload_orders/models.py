"""The shapes of an order as it moves through the pipeline: the payloads and results of its jobs.

The checkout's body becomes ``order.create``'s payload; each step hands the next one the whole
order (small: ids, quantities, a payment token, never card numbers), so a step needs nothing but
its payload, and the same payload every time it is delivered (which is what lets the idempotency
key of the next step match on a redelivery).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, EmailStr, Field, model_validator

from offload import Payload

#: The characters a name may not contain: it goes into an email header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def _one_line(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must be one line of text")
    return value


Sku = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$", description="A product code.")]
Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_one_line)]
PaymentToken = Annotated[
    str, Field(pattern=r"^tok_[A-Za-z0-9_]{1,60}$", description="The payment gateway's card token (tok_...).")
]


class Line(Payload):
    """One line of a cart: a product and how many."""

    sku: Sku
    quantity: int = Field(ge=1, le=100)


class Customer(Payload):
    """Who ordered, and where their emails go."""

    email: EmailStr = Field(max_length=254)
    name: Name


class CreateOrder(Payload):
    """A checkout: the cart, the customer and the card token to charge."""

    customer: Customer
    lines: list[Line] = Field(min_length=1, max_length=20)
    payment_token: PaymentToken

    @model_validator(mode="after")
    def _one_line_per_sku(self) -> CreateOrder:
        skus = [line.sku for line in self.lines]
        twice = sorted({sku for sku in skus if skus.count(sku) > 1})
        if twice:
            raise ValueError(f"each product may be listed once; listed more than once: {', '.join(twice)}")
        return self


class Order(Payload):
    """A priced order, as ``inventory.reserve`` and ``payment.charge`` receive it."""

    order_id: str = Field(min_length=1, max_length=64)
    customer: Customer
    lines: list[Line] = Field(min_length=1, max_length=20)
    amount_cents: int = Field(ge=0)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    payment_token: PaymentToken


class OrderPlaced(BaseModel):
    """What ``order.create`` returns: the order, its total and the job that reserves its stock."""

    order_id: str
    amount_cents: int
    next_job: str


class StockReserved(BaseModel):
    """What ``inventory.reserve`` returns: the job that charges the order."""

    order_id: str
    next_job: str


class PaymentCharged(BaseModel):
    """What ``payment.charge`` returns: the gateway's charge and the confirmation email's job."""

    order_id: str
    charge_id: str
    amount_cents: int
    next_job: str
