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

Those phases never see a job's event stream answer 200: they make up job ids. The stream run does:
schemathesis's own command line, with every check it has, runs its stateful phase over
``POST /v1/jobs`` and the operations the document links its answer to, so it follows each accepted
job to ``GET /v1/jobs/{id}/events`` and validates every event of the stream against the document;
a worker of the ``system`` queue ends the jobs, so the streams end. It lasts
:data:`STREAM_RUN_SECONDS` (minutes in ``make chaos``, which gets its ``fuzz streams`` row), and
must validate at least :data:`MIN_STREAMS` streams with no failure on the events operation.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import operator
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS as ALL_CHECKS
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from offload.status import JobState
from tests.chaos.ledger import report
from tests.helpers import VENV_BIN
from tests.support import KEYS
from tests.system.stack import Api, Worker

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


# A tenant's change feed answers a valid request with a stream that never ends (keep-alives every
# few seconds, events only when jobs change): reading it to its end would take the stream's hour.
# Its events and its 4xx answers are tested by tests/api/test_tenant_events.py and
# tests/api/test_browser_tokens.py. (A filter of the fixture's schema is not kept: set it here.)
schema = schemathesis.pytest.from_fixture("api_schema").exclude(operation_id="feed_tenant_events")


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


# The stream run -------------------------------------------------------------------------------

#: How long schemathesis's stateful phase runs (it starts over until the time is spent).
STREAM_RUN_SECONDS = 240 if LARGE else 8

#: The checks the stream run leaves out: JSON Schema counts 98.0 as an integer, the API's strict
#: payload models refuse a float where an int is documented (as they refuse "98"), and
#: schemathesis reports that deliberate strictness (ST202) on a random draw now and then.
NOT_CHECKED = frozenset({"positive_data_acceptance"})
#: Streams the run must have validated at least (a run of 8 s validates fifty alone, 15 beside
#: another test process on 2 cores).
MIN_STREAMS = 500 if LARGE else 10
#: The longest one stream is read: the run's jobs end within a second, so only a stream that
#: never ended would take that long (schemathesis then validates the events it received).
STREAM_SECONDS = 10
#: Submitting a job, and the operations the document links its answer to.
LINKED = ("jobs_submit_job", "jobs_get_job", "events_job_events", "jobs_get_job_logs", "jobs_cancel_job")
EVENTS_PATH = "/v1/jobs/{job_id}/events"
EVENTS = f"GET {EVENTS_PATH}"
_TERMINAL = {state.value for state in JobState if state.terminal}


def quick_jobs_only(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with ``JobRequest`` narrowed to jobs the ``system`` worker ends within a second.

    That is ``system.noop``, and ``system.sleep`` of at most 500 ms (which reports progress and
    writes a log line), both without options (a delay would hold a job back as long as it says).
    Every stream the run opens then ends. The run sends only valid requests: a narrower request
    schema would otherwise call the API's acceptance of anything else a failure. The responses,
    the events and the links are the document's own.
    """
    narrowed = copy.deepcopy(document)
    schemas = narrowed["components"]["schemas"]
    union = schemas["JobRequest"]
    union["discriminator"]["mapping"] = {
        name: ref for name, ref in union["discriminator"]["mapping"].items() if name in ("system.noop", "system.sleep")
    }
    union["oneOf"] = [{"$ref": ref} for ref in union["discriminator"]["mapping"].values()]
    for ref in union["discriminator"]["mapping"].values():
        del schemas[ref.rsplit("/", 1)[1]]["properties"]["options"]
    schemas["SleepPayload"]["properties"]["ms"]["maximum"] = 500
    return narrowed


@dataclass(frozen=True)
class Step:
    """One request of the run: its operation, the answer, and each check's outcome (name → status)."""

    operation: str
    resumed: bool
    status: int
    content_type: str
    body: bytes
    checks: dict[str, str]
    failures: tuple[str, ...]


def _steps(report_path: Path) -> Iterator[Step]:
    """Every request of a run, read from schemathesis's NDJSON report (one event per line)."""
    for line in report_path.read_text().splitlines():
        event = json.loads(line)
        recorder = event.get("ScenarioFinished", {}).get("recorder", {})
        for case_id, case in recorder.get("cases", {}).items():
            response = (recorder["interactions"].get(case_id) or {}).get("response")
            if response is None:
                continue
            checks = recorder["checks"].get(case_id, [])
            yield Step(
                operation=f"{case['value']['method']} {case['value']['path']}",
                resumed="Last-Event-ID" in case["value"].get("headers", {}),
                status=response["status_code"],
                content_type=(response["headers"].get("content-type") or [""])[0],
                body=base64.b64decode(response.get("content", {}).get("$base64", "")),
                checks={check["name"]: check["status"] for check in checks},
                failures=tuple(
                    check["failure_info"]["failure"]["code"] for check in checks if check["status"] == "failure"
                ),
            )


def _events(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """A stream's events as ``(name, data)``, parsed as any SSE client would (blocks without data are not events)."""
    found = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "data" in fields:
            found.append((fields.get("event", "message"), json.loads(fields["data"])))
    return found


def run_schemathesis(api: Api, document: dict[str, Any], into: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``schemathesis run`` with every check, its stateful phase over :data:`LINKED`; returns its output and report."""
    (into / "openapi.json").write_text(json.dumps(document))
    ndjson = into / "run.ndjson"
    args = [
        str(VENV_BIN / "schemathesis"),
        "run",
        str(into / "openapi.json"),
        f"--url=http://127.0.0.1:{api.port}",
        "--checks=all",
        f"--exclude-checks={','.join(NOT_CHECKED)}",
        "--phases=stateful",
        "--mode=positive",
        f"--max-time={STREAM_RUN_SECONDS}",
        f"--request-timeout={STREAM_SECONDS}",
        f"--header=Authorization: Bearer {KEYS['acme']}",
        "--workers=1",
        "--generation-database=none",
        "--report=ndjson",
        f"--report-ndjson-path={ndjson}",
        "--no-color",
        *(f"--include-operation-id={operation_id}" for operation_id in LINKED),
    ]
    # Run in ``into``: the command line keeps its files (a hypothesis database, reports) where it runs.
    done = subprocess.run(args, cwd=into, capture_output=True, text=True, timeout=STREAM_RUN_SECONDS + 120, check=False)
    return done, ndjson


def test_live_event_streams_pass_every_check_of_schemathesis(
    live_api: Api, system_worker: Worker, tmp_path: Path
) -> None:
    """Every 200 stream schemathesis reaches by the document's links passes all its checks, and there are enough.

    Failures it finds on the other operations do not fail it (they show in its message when
    something else does, and in the ``fuzz streams`` row of ``make chaos``).
    """
    started = time.monotonic()
    _, _, document = live_api.request("GET", "/openapi.json")
    done, ndjson = run_schemathesis(live_api, quick_jobs_only(document), tmp_path)
    output = f"schemathesis exited {done.returncode}:\n{done.stdout[-8000:]}\n{done.stderr[-4000:]}"
    assert ndjson.exists() and "EngineFinished" in ndjson.read_text(), output
    steps = list(_steps(ndjson))
    streams = [s for s in steps if s.operation == EVENTS and s.status == 200]
    validated = [s for s in streams if s.checks.get("response_schema_conformance") == "success"]
    events = [_events(s.body) for s in validated]
    names = Counter(name for stream in events for name, _ in stream)
    ended = sum(1 for stream in events if stream and stream[-1][0] == "state" and stream[-1][1]["state"] in _TERMINAL)
    # A Last-Event-ID (generated) at or past the job's last event: the stream closes with no event.
    resumed_past = sum(1 for step, stream in zip(validated, events, strict=True) if step.resumed and not stream)
    failures = Counter(f"{s.operation}: {code}" for s in steps for code in s.failures)
    row = {
        "streams": len(streams),
        "validated": len(validated),
        "ended": ended,
        "resumed past the end": resumed_past,
        "events": dict(sorted(names.items())),
        "checks": len(validated[0].checks) if validated else 0,
        "failures": dict(sorted(failures.items())) or None,
        "seconds": round(time.monotonic() - started, 1),
    }
    if LARGE:
        report("fuzz streams", None, double_effects=0, recovery_s=None, **row)

    assert not [f for f in failures if f.startswith(f"{EVENTS}:")], f"{row}\n{output}"
    # Every 200 stream was validated, by every check schemathesis has, and there were enough of them.
    assert len(validated) == len(streams) >= MIN_STREAMS, f"{row}\n{output}"
    assert all(set(ALL_CHECKS.get_all_names()) - NOT_CHECKED <= set(s.checks) for s in validated), row
    assert all(s.content_type.startswith("text/event-stream") for s in validated), row
    # And each ran to its end: the job's terminal state event (or none, if resumed past it), then the close.
    assert ended + resumed_past == len(validated), row


#: Ways to describe the events wrongly, each in a place the checks must read to notice it: where
#: in the document, and what to change there.
BREAKS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "the stream as one string (the document before events were described)": (
        ("paths", EVENTS_PATH, "get", "responses", "200", "content", "text/event-stream"),
        {"schema": {"type": "string"}},
    ),
    "an event id that must start with x": (
        ("components", "schemas", "JobEventState", "properties", "id"),
        {"pattern": "^x"},
    ),
    "a state event's seq as a string (the JSON in data)": (
        ("components", "schemas", "StateEvent", "properties", "seq"),
        {"type": "string"},
    ),
    "the ended job's seq as a string (a reference inside data)": (
        ("components", "schemas", "Job", "properties", "seq"),
        {"type": "string"},
    ),
    "log lines of 3 characters at most": (
        ("components", "schemas", "LogEvent", "properties", "line"),
        {"maxLength": 3},
    ),
}


def test_the_checks_fail_a_stream_the_document_describes_wrongly(live_api: Api, system_worker: Worker) -> None:
    """The stream that passes against the document fails, as ST108, against each of :data:`BREAKS`.

    So the run above checks the events themselves, down to the JSON in their data and what it refers to.
    """
    status, _, accepted = live_api.request("POST", "/v1/jobs", {"type": "system.sleep", "payload": {"ms": 50}})
    assert status == 202, accepted
    _, _, document = live_api.request("GET", "/openapi.json")
    case = schemathesis.openapi.from_dict(document)[EVENTS_PATH]["GET"].Case(path_parameters={"job_id": accepted["id"]})
    response = case.call(
        base_url=f"http://127.0.0.1:{live_api.port}", headers={"Authorization": f"Bearer {KEYS['acme']}"}, timeout=10
    )
    assert {name for name, _ in _events(response.content)} >= {"state", "log"}, response.text
    case.validate_response(response, checks=[response_schema_conformance])

    for what, (where, change) in BREAKS.items():
        broken = copy.deepcopy(document)
        functools.reduce(operator.getitem, where, broken).update(change)
        broken_case = schemathesis.openapi.from_dict(broken)[EVENTS_PATH]["GET"].Case(
            path_parameters={"job_id": accepted["id"]}
        )
        with pytest.raises(FailureGroup) as failed:
            broken_case.validate_response(response, checks=[response_schema_conformance])
        assert {failure.code for failure in failed.value.exceptions} == {"ST108"}, what
