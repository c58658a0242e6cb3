"""The API's Prometheus metrics, and ``GET /metrics`` (admin key only: never public, §7.10 row 56).

Under gunicorn every worker process counts into prometheus-client's multiprocess files (the
directory ``gunicorn_conf`` sets up before any worker starts), and ``/metrics`` sums them, so any
worker answers for all. In a single process (tests, ``flask run``) the app's own registry serves.

Labels are bounded: the route *pattern* (``/v1/jobs/<job_id>``, not the id), the method (one of
:data:`METHODS`, any other ``other``), the status, a registered job type or ``unknown``, an error
code. Never a key, a tenant or an address, nor anything else a client can choose freely.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from prometheus_client.registry import Collector

from offload_api.auth import requires

bp = Blueprint("metrics", __name__)

#: Request latency buckets, seconds: the API answers in milliseconds; 0.5 s is the alert line.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
#: HTTP methods counted under their own name. A request may carry any token as its method, and
#: each new label value costs a counter and a histogram of 14 series in every process, for as long
#: as it runs: any other method, sent with no key at all, is counted as ``other`` (issue 29, item 7).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Error codes that mean the job was not handed to the broker.
PUBLISH_FAILURES = frozenset({"broker_unavailable", "service_busy", "status_store_unavailable"})


class ApiMetrics:
    """The API's metrics on a registry of the app's own, plus the scrape-time collectors."""

    def __init__(self, collectors: list[Collector] | None = None) -> None:
        import prometheus_client

        self.collectors = collectors or []
        self.prometheus = prometheus_client
        self.registry = prometheus_client.CollectorRegistry()
        self.requests = prometheus_client.Counter(
            "offload_api_requests_total", "HTTP requests.", ["route", "method", "status"], registry=self.registry
        )
        self.latency = prometheus_client.Histogram(
            "offload_api_request_seconds",
            "Seconds to answer an HTTP request (SSE streams excluded).",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.accepted = prometheus_client.Counter(
            "offload_api_jobs_accepted_total", "Jobs accepted (202).", ["type"], registry=self.registry
        )
        self.rejected = prometheus_client.Counter(
            "offload_api_jobs_rejected_total",
            "Job submissions refused, by error code.",
            ["type", "reason"],
            registry=self.registry,
        )
        self.publish_failures = prometheus_client.Counter(
            "offload_api_publish_failures_total",
            "Submissions that could not be handed to RabbitMQ or Redis.",
            ["reason"],
            registry=self.registry,
        )
        self.shed = prometheus_client.Counter(
            "offload_api_shed_total",
            "Requests refused before the app by load shedding: rate_limited (429, a tenant over its rate), "
            "inflight or body_bytes (503 overloaded, this process at its limit).",
            ["reason"],
            registry=self.registry,
        )
        self.streams = prometheus_client.Gauge(
            "offload_api_sse_streams",
            "Open Server-Sent Event streams.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )

    def count_shed(self, reason: str) -> None:
        """Count one request refused by :class:`offload_api.admission.Admission`."""
        self.shed.labels(reason).inc()

    def exposition(self) -> bytes:
        """Every process's metrics (multiprocess mode) or this process's."""
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if directory:
            from prometheus_client import multiprocess

            registry = self.prometheus.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        else:
            registry = self.prometheus.CollectorRegistry()
            registry.register(_Forward(self.registry))
        for collector in self.collectors:
            registry.register(collector)
        return bytes(self.prometheus.generate_latest(registry))


class _Forward(Collector):
    """Serves another registry's metrics from a registry built for one scrape."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        """Everything ``registry`` holds."""
        yield from self.registry.collect()


def install(app: Flask, metrics: ApiMetrics) -> None:
    """Time and count every request of ``app``, and serve ``/metrics``."""

    @app.before_request
    def _started() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _counted(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        method = method_label(request.method)
        metrics.requests.labels(route, method, str(response.status_code)).inc()
        if response.mimetype != "text/event-stream":
            metrics.latency.labels(route, method).observe(time.perf_counter() - g.get("metrics_started", 0.0))
        if route == "/v1/jobs" and request.method == "POST":
            _count_submission(metrics, response)
        return response

    app.register_blueprint(bp)
    app.extensions["offload_metrics"] = metrics


def method_label(method: str) -> str:
    """The ``method`` label of a request's method: the method itself if it is in :data:`METHODS`, else ``other``."""
    return method if method in METHODS else "other"


def _count_submission(metrics: ApiMetrics, response: Response) -> None:
    job_type = g.get("job_type") or "unknown"
    if response.status_code in (200, 202):
        metrics.accepted.labels(job_type).inc()
        return
    body: Any = response.get_json(silent=True) or {}
    reason = str(body.get("error", "error"))[:40]
    metrics.rejected.labels(job_type, reason).inc()
    if reason in PUBLISH_FAILURES:
        metrics.publish_failures.labels(reason).inc()


@bp.get("/metrics")
@requires("admin")
def metrics_endpoint() -> Response:
    """The Prometheus exposition of the API's metrics (admin key: Prometheus sends it as a bearer token)."""
    from flask import current_app

    found: ApiMetrics = current_app.extensions["offload_metrics"]
    return Response(found.exposition(), mimetype="text/plain; version=0.0.4")
