"""A real OTLP/HTTP trace receiver on 127.0.0.1: what a Collector's ``otlphttp`` receiver does, in the test.

No Collector binary is installable here, so the tests serve ``POST /v1/traces`` themselves and
decode each ``ExportTraceServiceRequest`` with the OpenTelemetry project's own protobufs
(``opentelemetry-proto``): the bytes the SDK's exporter sends are read as any backend reads them.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.helpers import serve_http, wait_for


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, its ids as lowercase hex (the ``traceparent`` spelling)."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    error: bool


@dataclass
class OtlpReceiver:
    """What the receiver was sent: every request's path and each span decoded."""

    port: int = 0
    requests: list[str] = field(default_factory=list)
    spans: list[ReceivedSpan] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        """The value for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter adds ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.port}"

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self.lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def wait_for_spans(
        self, trace_id: str, ready: Callable[[list[ReceivedSpan]], bool], timeout: float = 20
    ) -> list[ReceivedSpan]:
        """The trace's spans once ``ready`` says they are all there."""
        wait_for(lambda: ready(self.trace(trace_id)), timeout=timeout, message=lambda: f"spans: {self.trace(trace_id)}")
        return self.trace(trace_id)

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        found = []
        for resource_spans in request.resource_spans:
            service = next(
                (a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"), ""
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        ReceivedSpan(
                            service=service,
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            error=span.status.code == 2,
                        )
                    )
        with self.lock:
            self.spans.extend(found)


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    state = OtlpReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            with state.lock:
                state.requests.append(self.path)
            ok = self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/x-protobuf"
            if ok:
                state.take(body)
            answer = ExportTraceServiceResponse().SerializeToString() if ok else b""
            self.send_response(200 if ok else 404)
            for name, value in (("Content-Type", "application/x-protobuf"), ("Content-Length", str(len(answer)))):
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: object) -> None:
            return

    with serve_http(Handler) as state.port:
        yield state
