"""An order's progress, read from its jobs through the SDK: what the status page and its stream show.

An order is the chain of jobs its steps published (each step's result names the next job), so
its status needs no table of its own: :func:`track` walks the chain from the ``order.create``
job, :func:`follow` does so again each time the job at its end changes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from offload import Publisher

#: What the customer reads, by the step the order is at and that step's state.
_RUNNING = {
    "order.create": "received",
    "inventory.reserve": "reserving_stock",
    "payment.charge": "awaiting_payment",
    "email.send": "paid",
}


@dataclass(frozen=True)
class Step:
    """One job of an order's chain."""

    type: str
    job_id: str
    state: str
    attempts: int
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class OrderView:
    """An order as its customer sees it.

    Attributes:
        order_id: the order (the id of its ``order.create`` job).
        status: ``received``, ``reserving_stock``, ``awaiting_payment``, ``payment_delayed`` (the
            gateway is in trouble: the order waits), ``paid`` (the confirmation is on its way),
            ``confirmed``, or one of the ends ``rejected``, ``out_of_stock``, ``payment_failed``.
        done: whether the status will not change again.
        amount_cents: the order's total, once priced.
        steps: the jobs so far, oldest first.
    """

    order_id: str
    status: str
    done: bool
    amount_cents: int | None
    steps: tuple[Step, ...]

    def as_json(self) -> dict[str, Any]:
        """The view as a JSON document."""
        return asdict(self)


def track(publisher: Publisher, order_id: str, *, tenant: str) -> OrderView | None:
    """The order's view now; None if ``order_id`` is no ``order.create`` job of ``tenant``."""
    record = publisher.get(order_id, tenant=tenant)
    if record is None or record.type != "order.create":
        return None
    steps: list[Step] = []
    amount: int | None = None
    while record is not None and len(steps) < len(_RUNNING):
        steps.append(
            Step(record.type, record.id, record.state.value, record.attempts, record.error_code, record.error_message)
        )
        result = record.result if isinstance(record.result, dict) else {}
        if record.type == "order.create" and isinstance(result.get("amount_cents"), int):
            amount = result["amount_cents"]
        following = result.get("next_job") if record.state.value == "succeeded" else None
        record = publisher.get(following, tenant=tenant) if isinstance(following, str) else None
    status, done = _status(steps[-1])
    return OrderView(order_id=order_id, status=status, done=done, amount_cents=amount, steps=tuple(steps))


def _status(last: Step) -> tuple[str, bool]:
    """The order's status from the last job of its chain, and whether it is final."""
    if last.type == "email.send":
        return ("confirmed", True) if last.state == "succeeded" else ("paid", last.state in ("failed", "dead"))
    if last.state in ("failed", "dead", "cancelled"):
        ends = {"order.create": "rejected", "inventory.reserve": "out_of_stock", "payment.charge": "payment_failed"}
        return ends.get(last.type, "failed"), True
    if last.type == "payment.charge" and last.state == "retrying":
        return "payment_delayed", False
    return _RUNNING.get(last.type, last.state), False


def follow(publisher: Publisher, order_id: str, *, tenant: str, timeout: float) -> Iterator[OrderView]:
    """Yield the order's view now and each time it changes, until it is done or ``timeout`` passes.

    It watches the job at the end of the chain (:meth:`offload.Publisher.watch`); when that job
    succeeds, the chain has a new end, which it watches next.
    """
    deadline = time.monotonic() + timeout
    last = track(publisher, order_id, tenant=tenant)
    if last is None:
        return
    yield last
    watching = None
    while not last.done and last.steps[-1].job_id != watching and time.monotonic() < deadline:
        watching = last.steps[-1].job_id
        for _ in publisher.watch(watching, timeout=max(0.0, deadline - time.monotonic()), tenant=tenant):
            view = track(publisher, order_id, tenant=tenant)
            if view is not None and view != last:
                last = view
                yield view
