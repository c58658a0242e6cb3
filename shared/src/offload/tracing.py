"""One trace per job: OpenTelemetry spans from the HTTP submit to the webhook request, off by default.

Turned on only by the standard ``OTEL_*`` variables (:func:`configure`): ``OTEL_TRACES_EXPORTER``
(``otlp``, OTLP over HTTP/protobuf, or ``console``), or an OTLP endpoint
(``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SDK_DISABLED=true``
or ``OTEL_TRACES_EXPORTER=none`` keep it off. The SDK reads the rest itself (``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``/``_ARG``, ``OTEL_BSP_*``, the exporter's
headers and timeout).

Off, nothing is set up and no span is made: every helper here first checks one module global and
returns at once (:func:`span` hands back a shared no-op context manager), so the hot paths pay a
function call per job, no more (docs/tracing.md has the measurements).

The trace travels with the job as a W3C ``traceparent`` (and ``tracestate``): in the message body at
``options.offload.traceparent`` (and as the AMQP header of that name) and in the job's record, from
which retries, delayed jobs, flow nodes released later and webhook deliveries rebuild it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from offload.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "SpanKind",
    "TraceCarrier",
    "carrier",
    "configure",
    "configure_tracing",
    "current_trace_id",
    "enabled",
    "inject_headers",
    "server_span",
    "span",
    "turned_on",
]

#: Exporters this module builds (``OTEL_TRACES_EXPORTER``); ``none`` is off.
EXPORTERS = ("otlp", "console")

_PROPAGATOR = TraceContextTextMapPropagator()


class _Headers(Protocol):
    """What :func:`server_span` reads of a request's headers (a dict, Werkzeug's ``Headers``)."""

    def get(self, key: str, /) -> str | None: ...


_NULL: AbstractContextManager[None] = contextlib.nullcontext()
#: The tracer of this process, or None while tracing is off (the one check every helper makes).
_tracer: Tracer | None = None
_provider: Any = None


@dataclass(frozen=True)
class TraceCarrier:
    """A W3C trace context as it travels: the ``traceparent`` header value and its ``tracestate``."""

    traceparent: str
    tracestate: str = ""

    @property
    def trace_id(self) -> str:
        """The 32 hex digits of the trace id (the second field of ``traceparent``)."""
        return self.traceparent.split("-")[1]

    def fields(self) -> dict[str, str]:
        """``traceparent`` (and ``tracestate`` when there is one), as a message or a record keeps them."""
        return {"traceparent": self.traceparent, **({"tracestate": self.tracestate} if self.tracestate else {})}

    @classmethod
    def parse(cls, traceparent: object, tracestate: object = "") -> TraceCarrier | None:
        """The carrier of a well-formed ``traceparent`` (W3C version 00 rules); None for anything else."""
        if not isinstance(traceparent, str) or _valid_context(traceparent, "") is None:
            return None
        return cls(traceparent, tracestate if isinstance(tracestate, str) else "")


def turned_on(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces to be exported (they do not by default).

    Raises:
        ValueError: ``OTEL_TRACES_EXPORTER`` names an exporter this module does not build, or
            ``OTEL_EXPORTER_OTLP_PROTOCOL`` a protocol other than ``http/protobuf``.
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    if exporter and exporter not in EXPORTERS:
        raise ValueError(
            f"OTEL_TRACES_EXPORTER={exporter!r} is not supported; use one of {', '.join(EXPORTERS)}, none."
        )
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    if protocol and protocol != "http/protobuf":
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; only http/protobuf is.")
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return bool(exporter or endpoint)


def configure(default_service: str, environ: Mapping[str, str] | None = None) -> bool:
    """Set up this process's tracer from the ``OTEL_*`` variables; returns whether tracing is on.

    Called once at each composition root (the API's app factory, a worker's app); a second call
    keeps the first setup. Off by default: with none of the variables set nothing is imported
    beyond the API package and no span is ever made.

    Raises:
        ValueError: an ``OTEL_*`` variable asks for something unsupported (see :func:`turned_on`).
    """
    if _tracer is not None or not turned_on(environ):
        return _tracer is not None
    env = os.environ if environ is None else environ
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    resource = Resource.create({})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service}))
    provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER(_ARG)
    exporter: SpanExporter
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_(TRACES_)*
    provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    logger.info("Tracing on: exporting spans of %s.", resource.attributes.get(SERVICE_NAME))
    return True


def configure_tracing(default_service: str) -> bool:
    """:func:`configure` for a composition root: an unsupported ``OTEL_*`` value is a :class:`ConfigError`.

    Raises:
        ConfigError: the message names the variable and what it may be.
    """
    try:
        return configure(default_service)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def install(provider: Any) -> None:
    """Trace with ``provider`` (an SDK ``TracerProvider``): :func:`configure`'s last step, and the tests' way in."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("offload")


def shutdown() -> None:
    """Flush the spans not yet exported and turn tracing off (the SDK also flushes at exit)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def enabled() -> bool:
    """Whether this process traces (cheap: a hot path may ask it per job)."""
    return _tracer is not None


def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: TraceCarrier | None = None,
    attributes: Mapping[str, str | int | float | bool] | None = None,
    start_ns: int | None = None,
) -> AbstractContextManager[Span | None]:
    """A span around the block, the current span inside it; a shared no-op while tracing is off.

    ``parent`` continues a trace that came from elsewhere (a message, a record); without one the
    span is a child of the current span, or starts a new trace. An exception leaving the block is
    recorded and marks the span as an error.
    """
    if _tracer is None:
        return _NULL
    return _span(_tracer, name, kind, parent, attributes, start_ns)


@contextlib.contextmanager
def _span(
    tracer: Tracer,
    name: str,
    kind: SpanKind,
    parent: TraceCarrier | None,
    attributes: Mapping[str, str | int | float | bool] | None,
    start_ns: int | None,
) -> Iterator[Span]:
    ctx = _valid_context(parent.traceparent, parent.tracestate) if parent is not None else None
    with tracer.start_as_current_span(
        name, context=ctx, kind=kind, attributes=attributes, start_time=start_ns
    ) as current:
        yield current


@contextlib.contextmanager
def server_span(
    name: str, headers: _Headers, attributes: Mapping[str, str | int | float | bool] | None = None
) -> Iterator[Span | None]:
    """A server span continuing the caller's ``traceparent``/``tracestate`` headers (a new trace without them).

    A malformed ``traceparent`` is ignored: the request starts a new trace, never an error.
    """
    if _tracer is None:
        yield None
        return
    parent = TraceCarrier.parse(headers.get("traceparent"), headers.get("tracestate") or "")
    with _span(_tracer, name, SpanKind.SERVER, parent, attributes, None) as current:
        yield current


def carrier() -> TraceCarrier | None:
    """The current span's context to hand on (None while tracing is off or outside any span)."""
    if _tracer is None:
        return None
    found: dict[str, str] = {}
    _PROPAGATOR.inject(found)
    return TraceCarrier.parse(found.get("traceparent"), found.get("tracestate", ""))


def inject_headers(headers: MutableMapping[str, str]) -> None:
    """Add the current span's ``traceparent`` (and ``tracestate``) to outgoing HTTP headers (none while off)."""
    found = carrier()
    if found is not None:
        headers.update(found.fields())


def current_trace_id() -> str | None:
    """The trace id of the current span (32 hex digits), for log lines; None while off or outside a span."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def mark_error(current: Span | None, description: str) -> None:
    """Mark ``current`` (a span from :func:`span`, None while off) as failed with ``description``."""
    if current is not None:
        current.set_status(Status(StatusCode.ERROR, description))


def _valid_context(traceparent: str, tracestate: str) -> otel_context.Context | None:
    """The context a ``traceparent`` names, or None when it is malformed (a new trace starts then)."""
    ctx = _PROPAGATOR.extract(
        {"traceparent": traceparent, "tracestate": tracestate} if tracestate else {"traceparent": traceparent}
    )
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None
