"""JobMetrics in one process: outcomes, waits and handler events land in its registry with bounded labels."""

from __future__ import annotations

from unittest.mock import MagicMock

import pytest

from offload.errors import ConfigError
from offload.worker.app import _dramatiq_prometheus
from offload.worker.context import JobContext
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
    assert sample("offload_jobs_total", {"queue": "email", "type": "email.send", "state": "retrying"}) == 1
    assert sample("offload_jobs_total", {"queue": "email", "type": "email.send", "state": "succeeded"}) is None
    assert sample("offload_job_wait_seconds_count", {"queue": "email", "type": "email.send"}) == 1
    labels = {"queue": "email", "type": "email.send", "event": "duplicate_not_sent"}
    assert sample("offload_job_events_total", labels) == 1


def test_a_production_worker_refuses_to_serve_metrics_on_an_unchosen_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("dramatiq_prom_host", raising=False)
    with pytest.raises(ConfigError, match="dramatiq_prom_host"):
        _dramatiq_prometheus(make_settings(env="production"))
    _dramatiq_prometheus(make_settings())  # development: a warning only
    monkeypatch.setenv("dramatiq_prom_host", "127.0.0.1")
    _dramatiq_prometheus(make_settings(env="production"))
