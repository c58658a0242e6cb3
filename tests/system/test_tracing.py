"""One trace per job, as exported by the real API and worker processes to a real OTLP/HTTP receiver."""

from __future__ import annotations

import os
from pathlib import Path

from offload.testing import wait_for
from offload_email.worker import SPEC as EMAIL_SPEC
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.webhooks import Receiver
from tests.system.stack import Api, Worker

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def _one(spans: list[ReceivedSpan], name: str, **where: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name and all(s.attributes.get(k) == v for k, v in where.items())]
    assert len(found) == 1, (name, where, [(s.name, s.attributes) for s in spans])
    return found[0]


def _stack(env: dict[str, str], logs: Path) -> tuple[Api, Worker]:
    api = Api(env, logs)
    try:
        return api, Worker(env, logs, domain="email", threads=2, queues=(*EMAIL_SPEC.queues, "system"))
    except BaseException:
        api.stop()
        raise


def _submit(api: Api, receiver: Receiver) -> str:
    body = {
        "type": "system.noop",
        "payload": {"echo": "traced"},
        "options": {"callback_url": receiver.url, "then": [{"type": "system.noop", "payload": {}}]},
    }
    status, _, accepted = api.request(
        "POST", "/v1/jobs", body, headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01", "tracestate": "acme=1"}
    )
    assert status == 202, accepted
    return str(accepted["id"])


def test_one_trace_runs_from_the_http_submit_through_the_worker_to_the_webhook_request(
    env: dict[str, str], logs: Path, otlp: OtlpReceiver, receiver: Receiver
) -> None:
    env = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    api, worker = _stack(env, logs)
    try:
        # Given a client that sends its own traceparent with a job that has a follow-up and a callback,
        job_id = _submit(api, receiver)
        wait_for(lambda: len(receiver.received) == 1, timeout=20, message="no webhook arrived")
        # then the job's record names the caller's trace,
        status, _, record = api.request("GET", f"/v1/jobs/{job_id}")
        assert status == 200 and record["trace_id"] == TRACE_ID
        follow_up = f"offload.job {record['type']}"
        # and the receiver gets one trace: the API's spans, the worker's, the follow-up's and the webhook's.
        spans = otlp.wait_for_spans(
            TRACE_ID,
            lambda spans: (
                # three processes export on their own schedules: wait for the API's spans as well
                any(s.name == "offload.submit" for s in spans)
                and sum(s.name == "offload.publish" for s in spans) >= 2
                and sum(s.name == follow_up for s in spans) == 2
                and any(s.name == "offload.webhook.send" for s in spans)
                and sum(s.name == "offload.state.finish" for s in spans) >= 3
            ),
            timeout=30,
        )
    finally:
        api.stop()
        worker.stop()
    submit = _one(spans, "offload.submit")
    assert submit.service == "offload-api" and submit.parent_id == CALLER_SPAN and submit.kind == 2  # SERVER
    publish = _one(spans, "offload.publish", **{"offload.job_id": job_id})
    assert publish.parent_id == submit.span_id and publish.service == "offload-api"
    wait = _one(spans, "offload.queue_wait", **{"offload.job_id": job_id})
    job = _one(spans, follow_up, **{"offload.job_id": job_id})
    assert wait.parent_id == job.parent_id == publish.span_id
    assert job.service == "offload-worker-email"
    children = sorted((s for s in spans if s.parent_id == job.span_id), key=lambda s: s.start_ns)
    names = [s.name for s in children]
    assert names[:3] == ["offload.state.start", "offload.run", "offload.publish"], names
    assert names[-1] == "offload.state.finish", names
    start, run, then_publish, finish = children[0], children[1], children[2], children[-1]
    # in order: submitted, published, waited, started, ran, finished
    assert submit.start_ns <= publish.start_ns <= publish.end_ns <= submit.end_ns
    assert wait.start_ns <= publish.end_ns and wait.end_ns <= job.start_ns + 1_000_000
    assert start.end_ns <= run.start_ns and run.end_ns <= finish.start_ns
    # the follow-up continues the trace under its parent's run, its own spans under its publish
    follow_up_job = next(s for s in spans if s.name == follow_up and s.span_id != job.span_id)
    assert follow_up_job.parent_id == then_publish.span_id
    # the webhook delivery continues it too, and its request carries the send span's traceparent
    deliver = _one(spans, "offload.job webhook.deliver")
    assert deliver.parent_id == publish.span_id
    send = _one(spans, "offload.webhook.send")
    deliver_run = next(s for s in spans if s.name == "offload.run" and s.parent_id == deliver.span_id)
    assert send.parent_id == deliver_run.span_id and send.attributes["http.response.status_code"] == 200
    headers, _ = receiver.received[0]
    assert headers["traceparent"] == f"00-{TRACE_ID}-{send.span_id}-01"
    assert headers["tracestate"] == "acme=1"


def test_with_tracing_off_nothing_is_exported_and_no_trace_is_kept(
    env: dict[str, str], logs: Path, otlp: OtlpReceiver, receiver: Receiver
) -> None:
    # Given an endpoint configured but the SDK disabled (the standard switch),
    env = {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    env["OTEL_SDK_DISABLED"] = "true"
    assert "OTEL_TRACES_EXPORTER" not in os.environ
    api, worker = _stack(env, logs)
    try:
        job_id = _submit(api, receiver)
        wait_for(lambda: len(receiver.received) == 1, timeout=20, message="no webhook arrived")
        status, _, record = api.request("GET", f"/v1/jobs/{job_id}")
    finally:
        api.stop()  # a stop flushes whatever a process had to export
        worker.stop()
    # then the job ran, but no trace was kept or sent anywhere.
    assert status == 200 and record["state"] == "succeeded" and record["trace_id"] is None
    headers, _ = receiver.received[0]
    assert "traceparent" not in headers
    assert otlp.requests == [] and otlp.spans == []
