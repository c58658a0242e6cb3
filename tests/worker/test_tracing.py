"""Tracing in process (offload.tracing), its spans kept by the SDK's in-memory exporter.

The same paths are exported by real processes to a real OTLP receiver in
tests/system/test_tracing.py; here the checks that need many jobs or a look inside a message.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from flask import Flask
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from offload import tracing
from offload.logs import JsonFormatter
from offload.publish import Publisher
from offload.settings import Settings
from offload.testing import wait_for, wait_state
from offload.tracing import TraceCarrier
from tests.support import AMQP_URL, KEYS, Api, RunningWorker, make_settings
from tests.support.wire import BrokerUser, publish_as, wire_message

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, every span kept in memory; off again afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.shutdown()


def _hex(span: ReadableSpan) -> tuple[str, str, str]:
    """The span's trace id, its id and its parent's id ("" for a root), in hex."""
    assert span.context is not None
    parent = format(span.parent.span_id, "016x") if span.parent is not None else ""
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x"), parent


def _queued_message(queue: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The body and AMQP headers of the message waiting in ``queue`` (taken off it)."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        method, properties, body = connection.channel().basic_get(queue, auto_ack=True)
        assert method is not None, f"no message in {queue}"
        return json.loads(body), dict(properties.headers or {})
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, True),
    ],
)
def test_tracing_is_off_unless_the_otel_variables_ask_for_an_exporter(environ: dict[str, str], on: bool) -> None:
    assert tracing.turned_on(environ) is on


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    ],
)
def test_an_unsupported_exporter_or_protocol_is_a_clear_error(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="OTEL_"):
        tracing.turned_on(environ)


def test_off_by_default_configure_sets_nothing_up_and_makes_no_span() -> None:
    assert tracing.configure("offload-test", {}) is False
    assert not tracing.enabled()
    with tracing.span("offload.run") as current:
        assert current is None
    assert tracing.carrier() is None and tracing.current_trace_id() is None


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        f"00-{'0' * 32}-b7ad6b7169203331-01",  # an all-zero trace id is invalid
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"00-{TRACE_ID.upper()}-b7ad6b7169203331-01",
        f"ff-{TRACE_ID}-b7ad6b7169203331-01",
    ],
)
def test_a_malformed_traceparent_is_no_carrier(value: str | None) -> None:
    assert TraceCarrier.parse(value) is None


def test_the_api_continues_the_callers_trace_into_the_record_the_message_body_and_its_amqp_header(
    spans: InMemorySpanExporter, api: Api, app: Flask
) -> None:
    response = api.post(
        "/v1/jobs",
        json={"type": "system.noop", "payload": {}},
        headers={"traceparent": TRACEPARENT, "tracestate": "acme=1"},
    )
    assert response.status_code == 202
    job_id = response.get_json()["id"]
    submit, publish = (
        next(s for s in spans.get_finished_spans() if s.name == n) for n in ("offload.submit", "offload.publish")
    )
    assert _hex(submit) == (TRACE_ID, _hex(submit)[1], "b7ad6b7169203331")
    assert _hex(publish)[2] == _hex(submit)[1]
    sent = f"00-{TRACE_ID}-{_hex(publish)[1]}-01"
    body, headers = _queued_message("system")
    assert body["options"]["offload"]["traceparent"] == sent and body["options"]["offload"]["tracestate"] == "acme=1"
    assert headers == {"traceparent": sent, "tracestate": "acme=1"}
    record = api.get(f"/v1/jobs/{job_id}").get_json()
    assert record["trace_id"] == TRACE_ID
    # and the job's admin page shows it
    admin = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', admin.get("/admin/login").get_data(as_text=True))
    assert token is not None
    admin.post("/admin/login", data={"key": KEYS["admin"], "csrf_token": token.group(1)})
    assert f'<dd id="trace"><code>{TRACE_ID}</code></dd>' in admin.get(f"/admin/jobs/{job_id}").get_data(as_text=True)


@pytest.mark.parametrize("header", ["00-nonsense", f"00-{TRACE_ID}-b7ad6b7169203331", "x" * 600])
def test_a_malformed_traceparent_header_starts_a_new_trace_and_is_never_an_error(
    spans: InMemorySpanExporter, api: Api, header: str
) -> None:
    response = api.post("/v1/jobs", json={"type": "system.noop", "payload": {}}, headers={"traceparent": header})
    assert response.status_code == 202
    submit = next(s for s in spans.get_finished_spans() if s.name == "offload.submit")
    trace_id, _, parent = _hex(submit)
    assert parent == "" and trace_id != TRACE_ID
    assert api.get(f"/v1/jobs/{response.get_json()['id']}").get_json()["trace_id"] == trace_id


def test_with_tracing_off_a_callers_traceparent_goes_nowhere(api: Api) -> None:
    response = api.post("/v1/jobs", json={"type": "system.noop", "payload": {}}, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 202
    body, headers = _queued_message("system")
    assert "traceparent" not in body["options"]["offload"] and headers == {}
    assert api.get(f"/v1/jobs/{response.get_json()['id']}").get_json()["trace_id"] is None


def test_flow_nodes_released_later_and_batches_stay_in_the_submitters_trace(
    spans: InMemorySpanExporter, api: Api, publisher: Publisher, worker: RunningWorker
) -> None:
    nodes = [
        {"name": "c0", "type": "system.noop", "payload": {"echo": "child"}},
        {"name": "sum", "type": "system.gather", "needs": ["c0"]},
    ]
    flow = api.post("/v1/flows", json={"nodes": nodes}, headers={"traceparent": TRACEPARENT}).get_json()
    batch = api.post(
        "/v1/batches", json={"jobs": [{"type": "system.noop", "payload": {}}]}, headers={"traceparent": TRACEPARENT}
    ).get_json()
    assert publisher.flows.wait(flow["id"], timeout=20)["state"] == "succeeded"  # type: ignore[index]
    ids = [node["id"] for node in flow["nodes"]] + [job["id"] for job in batch["jobs"]]
    for job_id in ids:
        record = wait_state(publisher, job_id, "succeeded")
        assert record.trace_id == TRACE_ID, job_id
    # the parent node, published by the promoter once its child ended, ran in the same trace
    wait_for(lambda: any(s.name == "offload.job system.gather" for s in spans.get_finished_spans()), timeout=5)
    gather = next(s for s in spans.get_finished_spans() if s.name == "offload.job system.gather")
    assert _hex(gather)[0] == TRACE_ID


def test_a_retry_stays_in_its_jobs_trace_and_job_log_lines_carry_the_trace_id(
    spans: InMemorySpanExporter, settings: Settings, publisher: Publisher
) -> None:
    lines = _JsonLines()
    logging.getLogger().addHandler(lines)
    running = RunningWorker(make_settings(retry_backoff_scale=0.01), publisher, probe=False)
    try:
        with tracing.span("caller") as caller:
            assert caller is not None
            trace_id = format(caller.get_span_context().trace_id, "032x")
            job_id = publisher.publish("system.fail", {"succeed_on_attempt": 2}, tenant="acme", max_retries=2).job_id
        record = wait_state(publisher, job_id, "succeeded", timeout=20)
    finally:
        running.stop()
        logging.getLogger().removeHandler(lines)
    assert record.attempts == 2 and record.trace_id == trace_id
    jobs = [s for s in spans.get_finished_spans() if s.name == "offload.job system.fail"]
    assert len(jobs) == 2 and {_hex(s)[0] for s in jobs} == {trace_id}
    runs = [s for s in spans.get_finished_spans() if s.name == "offload.run" and _hex(s)[0] == trace_id]
    assert [s.status.is_ok for s in runs] == [False, True]  # the first attempt's failure is on its span
    # The retry's warning, written while the job ran, names the job and its trace.
    warning = next(line for line in lines.lines if "retrying" in line["msg"])
    assert warning["job_id"] == job_id and warning["trace_id"] == trace_id


class _JsonLines(logging.Handler):
    """Keeps each record as the JSON formatter writes it, at the moment it is written."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.json = JsonFormatter()  # its own: configure_logging sets the formatter of every root handler
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.json.format(record)))


def test_an_email_send_is_a_span_of_its_jobs_run(
    spans: InMemorySpanExporter, publisher: Publisher, email_worker: Any, smtp_sink: tuple[Any, int]
) -> None:
    welcome = {"to": [{"email": "ann@example.com"}], "template": "welcome", "vars": {"name": "Ann", "product": "O"}}
    job_id = publisher.publish("email.send", welcome, tenant="acme").job_id
    assert wait_state(publisher, job_id, "succeeded", timeout=15).trace_id is not None
    wait_for(lambda: any(s.name == "offload.email.send" for s in spans.get_finished_spans()), timeout=5)
    finished = spans.get_finished_spans()
    send = next(s for s in finished if s.name == "offload.email.send")
    run = next(s for s in finished if s.name == "offload.run" and _hex(s)[1] == _hex(send)[2])
    job = next(s for s in finished if s.name == "offload.job email.send")
    assert _hex(run)[2] == _hex(job)[1] and send.attributes == {"offload.email.recipients": 1}


def test_a_wire_job_continues_its_publishers_trace_from_the_body_or_the_amqp_header_and_keeps_it(
    spans: InMemorySpanExporter, wire_settings: Settings, orders: BrokerUser, publisher: Publisher
) -> None:
    running = RunningWorker(wire_settings, publisher)
    in_header = f"00-{'1' * 32}-{'2' * 16}-01"
    try:
        by_body = wire_message("system.noop", "system", {}, traceparent=TRACEPARENT)
        publish_as(orders, "system", by_body)
        by_header = wire_message("system.noop", "system", {})
        publish_as(orders, "system", by_header, headers={"traceparent": in_header})
        records = [wait_state(publisher, m["message_id"], "succeeded", timeout=15) for m in (by_body, by_header)]
    finally:
        running.stop()
    # The adopted record keeps the trace, so that its retries and its webhook stay in it.
    assert [r.trace_id for r in records] == [TRACE_ID, "1" * 32]
    jobs = {_hex(s)[0]: _hex(s)[2] for s in spans.get_finished_spans() if s.name == "offload.job system.noop"}
    assert jobs[TRACE_ID] == "b7ad6b7169203331" and jobs["1" * 32] == "2" * 16
