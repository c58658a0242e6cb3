"""JobMetrics in one process: outcomes, waits and handler events land in its registry with bounded labels."""

from __future__ import annotations

from unittest.mock import MagicMock

from offload.worker.context import JobContext
from offload.worker.metrics import JobMetrics


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
