"""Validating a registered job type's payload by its JSON Schema, beside the other ways (issue 19).

The API validates a built-in type's payload with its pydantic model; a type it cannot import (a
team's own worker) only by the JSON Schema the worker registered. This measures, in one process
and one run, the time per payload of:

- the pydantic model (what a built-in type costs: the reference);
- ``jsonschema-rs`` (what the catalogue uses: ``offload.contracts.registered``);
- ``jsonschema`` (the pure-Python reference implementation, Draft 2020-12);
- ``fastjsonschema`` when it is installed (it compiles a schema to Python, but stops at Draft 7,
  while pydantic writes Draft 2020-12 schemas).

for a small payload (``text.wordcount``-like) and a larger one (``email.send``: nested recipients,
a template's variables), each valid and invalid (a rule broken deep inside).
"""

from __future__ import annotations

import functools
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import jsonschema_rs
from pydantic import Field, ValidationError

from offload.contracts import BUILT_IN, Payload

#: Validations per timing round, and rounds (the median is kept).
CALLS = 2_000
ROUNDS = 5


class WordCount(Payload):
    """A text to count (as ``examples/worker-text`` declares it)."""

    text: str = Field(max_length=1_000_000)
    top: int = Field(default=10, ge=0, le=100)


CASES: dict[str, tuple[type[Payload], dict[str, Any], dict[str, Any]]] = {
    "text.wordcount": (WordCount, {"text": "to be or not to be", "top": 3}, {"text": "x", "top": 1000}),
    "email.send": (
        BUILT_IN.get("email.send").payload,
        {
            "to": [{"email": f"user{i}@example.com", "name": f"User {i}"} for i in range(5)],
            "template": "welcome",
            "vars": {"name": "Ada", "product": "Offload", "items": [str(i) for i in range(10)]},
        },
        {
            "to": [{"email": f"user{i}@example.com", "name": f"User {i}"} for i in range(4)] + [{"email": 42}],
            "template": "welcome",
            "vars": {"name": "Ada"},
        },
    ),
}


@dataclass
class ValidateResult:
    """Microseconds per validation, by case, validity and validator (NaN where a validator is absent)."""

    us: dict[tuple[str, str, str], float] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)


def _per_call_us(check: Callable[[], object]) -> float:
    """The median over :data:`ROUNDS` of the time per call of ``check``, in µs."""
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(CALLS):
            check()
        times.append((time.perf_counter() - started) / CALLS * 1e6)
    return sorted(times)[len(times) // 2]


def _validators(model: type[Payload]) -> dict[str, Callable[[dict[str, Any]], object]]:
    schema = model.model_json_schema()
    found: dict[str, Callable[[dict[str, Any]], object]] = {}

    def pydantic_check(data: dict[str, Any]) -> object:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            return exc.errors()

    found["pydantic model"] = pydantic_check
    rust = jsonschema_rs.validator_for(schema)
    found["jsonschema-rs"] = lambda data: list(rust.iter_errors(data))
    python = jsonschema.Draft202012Validator(schema)
    found["jsonschema"] = lambda data: list(python.iter_errors(data))
    try:
        fast = importlib.import_module("fastjsonschema").compile(schema)
    except ImportError:
        return found
    except Exception as exc:  # a keyword it does not know: recorded as what every call answers
        refusal: object = exc
        found["fastjsonschema"] = lambda _data: refusal
        return found

    def fast_check(data: dict[str, Any]) -> object:
        try:
            return fast(data)
        except Exception as exc:  # JsonSchemaValueException
            return exc

    found["fastjsonschema"] = fast_check
    return found


def measure() -> ValidateResult:
    """Time every validator on every case, valid and invalid."""
    result = ValidateResult()
    for case, (model, valid, invalid) in CASES.items():
        validators = _validators(model)
        for name, check in validators.items():
            for validity, data in (("valid", valid), ("invalid", invalid)):
                result.us[(case, validity, name)] = _per_call_us(functools.partial(check, data))
    try:
        importlib.import_module("fastjsonschema")
    except ImportError:
        result.absent.append("fastjsonschema")
    return result


def notes(result: ValidateResult) -> list[str]:
    """Which validators were not installed."""
    return [f"validate: {name} is not installed: left out" for name in result.absent]


if __name__ == "__main__":
    measured = measure()
    for (case, validity, name), us in sorted(measured.us.items()):
        print(f"{case:15} {validity:8} {name:16} {us:8.2f} µs")
