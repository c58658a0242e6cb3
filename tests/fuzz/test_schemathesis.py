"""Every documented operation of the running API, fuzzed from its own OpenAPI document (issue 9, "Fuzzing").

schemathesis loads ``/openapi.json`` from a real ``offload-api`` process (gunicorn on loopback over
real RabbitMQ and Redis), generates requests for every operation from the document (valid ones and,
in its negative mode, ones that break the schema) and sends each four ways: with a client key
(tenant acme), with a read-only key, with the admin key, and with no key. Every response must

* not be a 5xx (``not_a_server_error``),
* have a status code the operation documents (``status_code_conformance``),
* have the content type documented for that status (``content_type_conformance``),
* match the schema documented for that status (``response_schema_conformance``).

The number of examples per operation and key mode is ``OFFLOAD_FUZZ_EXAMPLES`` (``make chaos`` sets
it large), or a small default so that the module stays well under 90 s in the default suite. A run
with ``OFFLOAD_FUZZ_EXAMPLES`` set also leaves its counts as the ``fuzz`` row of the chaos table.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.chaos.ledger import report
from tests.conftest import KEYS
from tests.system.stack import Api

pytestmark = pytest.mark.slow

#: Examples per operation and key mode: small in the default suite, large in ``make chaos``.
LARGE = os.environ.get("OFFLOAD_FUZZ_EXAMPLES")
EXAMPLES = int(LARGE) if LARGE else 15
#: What the issue asks of the large run: at least this many examples with each key mode.
LARGE_MINIMUM = 1_000

#: How each run authenticates: a client key, a read-only key, the admin key, or no key at all.
KEY_MODES: dict[str, str | None] = {
    "client": KEYS["acme"],
    "reader": KEYS["acme_reader"],
    "admin": KEYS["admin"],
    "anonymous": None,
}

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


class Tally:
    """Examples sent and operations that failed, per key mode, for the report row."""

    def __init__(self) -> None:
        self.examples: Counter[str] = Counter()
        self.phases: Counter[str] = Counter()
        self.failed: set[tuple[str, str]] = set()
        self.statuses: dict[str, Counter[int]] = {mode: Counter() for mode in KEY_MODES}
        self.started = time.monotonic()

    def row(self) -> dict[str, Any]:
        """The ``fuzz`` row of the chaos table: what ran and what failed."""
        return {
            "examples": sum(self.examples.values()),
            **{f"examples {mode}": self.examples[mode] for mode in KEY_MODES},
            "by phase": dict(sorted(self.phases.items())),
            "failures": len(self.failed),
            "failed operations": sorted(f"{mode}: {label}" for mode, label in self.failed) or None,
            **{f"statuses {mode}": dict(sorted(self.statuses[mode].items())) for mode in KEY_MODES},
            "seconds": round(time.monotonic() - self.started, 1),
            "checks": "5xx, status code, content type, response schema",
        }


TALLY = Tally()


@pytest.fixture(scope="module", params=list(KEY_MODES))
def key_mode(request: pytest.FixtureRequest) -> str:
    """The name of the way this run authenticates (a key of :data:`KEY_MODES`)."""
    return str(request.param)


@pytest.fixture(scope="module", autouse=True)
def fuzz_report() -> Iterator[None]:
    """After the module, with a large count, leave its row for ``make chaos``'s table; check the count."""
    yield
    if LARGE:
        report("fuzz", None, double_effects=0, recovery_s=None, **TALLY.row())
        short = {mode: count for mode, count in TALLY.examples.items() if count < LARGE_MINIMUM}
        assert not short, f"the large run must send at least {LARGE_MINIMUM} examples per key mode: {short}"


@pytest.fixture
def api_schema(live_api: Api, key_mode: str) -> schemathesis.BaseSchema:
    """The OpenAPI document as the running server serves it (once per key mode, which it parametrizes).

    The default suite runs schemathesis's examples and fuzzing phases; the large run adds its
    coverage phase (every boundary and every way to break each schema, a few thousand requests).
    """
    loaded = schemathesis.openapi.from_url(f"http://127.0.0.1:{live_api.port}/openapi.json")
    loaded.config.phases.update(phases=["examples", "fuzzing", *(["coverage"] if LARGE else [])])
    return loaded


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
def test_every_operation_answers_as_documented_with_every_role_and_with_no_key(
    case: schemathesis.Case, key_mode: str
) -> None:
    key = KEY_MODES[key_mode]
    case.headers.pop("Authorization", None)  # the key mode alone decides (the document has no such parameter)
    headers = {"Authorization": f"Bearer {key}"} if key else None
    TALLY.examples[key_mode] += 1
    TALLY.phases[case.meta.phase.name.value if case.meta is not None else "explicit"] += 1
    try:
        response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)
    except BaseException:
        TALLY.failed.add((key_mode, case.operation.label))
        raise
    TALLY.statuses[key_mode][response.status_code] += 1
