"""``text.wordcount`` against real RabbitMQ and Redis, through the fixtures of ``offload.testing``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from offload_text.worker import SPEC, WordCount, wordcount

from offload import JobContext
from offload.errors import JobCancelled, ValidationFailed

TEXT = "The cat sat.\nThe cat ran, the dog didn't.\n"


def test_a_text_is_counted_by_a_real_worker(
    offload_worker: Callable[..., Any], offload_wait: Callable[..., Any]
) -> None:
    with offload_worker(SPEC) as publisher:
        job = publisher.publish("text.wordcount", {"text": TEXT, "top": 2})
        record = offload_wait(publisher, job.job_id, "succeeded")
    assert record.result == {
        "words": 9,
        "lines": 2,
        "top": [{"word": "the", "count": 3}, {"word": "cat", "count": 2}],
    }


def test_a_bad_payload_is_refused_naming_the_field(offload_worker: Callable[..., Any]) -> None:
    with offload_worker(SPEC) as publisher, pytest.raises(ValidationFailed) as refused:
        publisher.publish("text.wordcount", {"text": "x", "top": 1000})
    assert [item["field"] for item in refused.value.errors] == ["payload.top"]


def test_a_long_text_stops_when_its_job_is_cancelled(offload_worker: Callable[..., Any]) -> None:
    with offload_worker(SPEC) as publisher:
        ctx = JobContext(job_id="j1", job_type="text.wordcount", tenant="t", attempt=1, store=publisher.store)
        ctx._cancel_requested = True  # what the worker's poll of the cancel flag finds after DELETE /v1/jobs/j1
        with pytest.raises(JobCancelled):
            wordcount(ctx, WordCount(text="word\n" * 5000))
