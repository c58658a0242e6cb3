"""JobMetrics in one process: outcomes, waits and handler events land in its registry with bounded labels."""

from __future__ import annotations

from unittest.mock import MagicMock

import prometheus_client
import pytest

from offload.errors import ConfigError
from offload.testing import wait_for
from offload.worker.app import _dramatiq_prometheus
from offload.worker.context import JobContext
from offload.worker.metric_buffer import MetricBuffer
from offload.worker.metrics import JobMetrics
from tests.support import make_settings


def test_outcomes_waits_and_handler_events_are_counted() -> None:
    metrics = JobMetrics()
    metrics.ended("email", "email.send", "succeeded")  # before boot: nothing to record into, no error
    metrics.after_process_boot(MagicMock())
    metrics.ended("email", "email.send", "retrying")
    metrics.waited("email", "email.send", 0.02)
    ctx = JobContext(
        job_id="j1", job_type="email.send", tenant="acme", attempt=2, store=MagicMock(), queue="email", _metrics=metrics
    )
    ctx.count("duplicate_not_sent")
    sample = metrics.registry.get_sample_value
    assert sample("offload_jobs_total", {"queue": "email", "type": "email.send", "state": "retrying"}) is None
    metrics.buffer.flush()  # what the buffer's thread does every half second
    assert sample("offload_jobs_total", {"queue": "email", "type": "email.send", "state": "retrying"}) == 1
    assert sample("offload_jobs_total", {"queue": "email", "type": "email.send", "state": "succeeded"}) is None
    assert sample("offload_job_wait_seconds_count", {"queue": "email", "type": "email.send"}) == 1
    labels = {"queue": "email", "type": "email.send", "event": "duplicate_not_sent"}
    assert sample("offload_job_events_total", labels) == 1


def test_the_buffer_applies_counts_and_observations_as_one_by_one_calls_would() -> None:
    registry = prometheus_client.CollectorRegistry()
    batched = prometheus_client.Histogram("batched", "b", ["q"], buckets=(1, 5, 10), registry=registry)
    direct = prometheus_client.Histogram("direct", "d", ["q"], buckets=(1, 5, 10), registry=registry)
    counter = prometheus_client.Counter("jobs", "j", ["q", "state"], registry=registry)
    buffer = MetricBuffer()
    values = [0.5, 1.0, 3.0, 5.0, 7.5, 10.0, 11.0, 250.0]
    for value in values:
        buffer.observe(batched, ("a",), value)
        direct.labels("a").observe(value)
        buffer.count(counter, ("a", "succeeded"))
    buffer.count(counter, ("a", "failed"), 2)
    seen: list[int] = []
    buffer.on_flush(lambda: seen.append(1))
    buffer.flush()
    expo = prometheus_client.generate_latest(registry).decode()
    assert expo.count("batched_bucket") == expo.count("direct_bucket") == 4
    for line in expo.splitlines():
        if line.startswith("direct_") and not line.startswith("direct_created"):
            assert line.replace("direct_", "batched_", 1) in expo
    assert registry.get_sample_value("jobs_total", {"q": "a", "state": "succeeded"}) == len(values)
    assert registry.get_sample_value("jobs_total", {"q": "a", "state": "failed"}) == 2
    assert seen == [1]
    buffer.flush()  # nothing recorded since: nothing changes
    assert registry.get_sample_value("jobs_total", {"q": "a", "state": "succeeded"}) == len(values)


def test_the_buffers_thread_applies_updates_and_a_stop_applies_the_rest() -> None:
    registry = prometheus_client.CollectorRegistry()
    counter = prometheus_client.Counter("ticks", "t", ["q"], registry=registry)
    buffer = MetricBuffer(interval=0.05)
    buffer.start()
    buffer.count(counter, ("a",))
    wait_for(lambda: registry.get_sample_value("ticks_total", {"q": "a"}) == 1, timeout=5)
    buffer.count(counter, ("a",), 3)
    buffer.stop()
    assert registry.get_sample_value("ticks_total", {"q": "a"}) == 4


def test_a_production_worker_refuses_to_serve_metrics_on_an_unchosen_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("dramatiq_prom_host", raising=False)
    with pytest.raises(ConfigError, match="dramatiq_prom_host"):
        _dramatiq_prometheus(make_settings(env="production"))
    _dramatiq_prometheus(make_settings())  # development: a warning only
    monkeypatch.setenv("dramatiq_prom_host", "127.0.0.1")
    _dramatiq_prometheus(make_settings(env="production"))
