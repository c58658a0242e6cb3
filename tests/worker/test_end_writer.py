"""The end writer: succeeded ends written in batches against real Redis, each message acked only after its end."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
import redis

from offload.errors import StatusStoreUnavailable
from offload.status import JobState, Retention, StatusStore
from offload.testing import wait_for
from offload.worker.end_writer import EndWriter
from tests.support import REDIS_URL, queued_record


@pytest.fixture
def store(redis_client: redis.Redis) -> StatusStore:
    return StatusStore.from_url(REDIS_URL, prefix="ew", retention=Retention(succeeded=100, failed=200))


def _running(store: StatusStore) -> str:
    job_id = queued_record(store)
    assert store.lifecycle.start(job_id, max_unfinished=3).outcome == "run"
    return job_id


class Acks:
    """Records each ack with the job's state in Redis at that moment."""

    def __init__(self, store: StatusStore) -> None:
        self.store = store
        self.seen: dict[str, str] = {}
        self.lock = threading.Lock()

    def ack(self, job_id: str) -> Any:
        def run() -> None:
            record = self.store.queries.get(job_id)
            with self.lock:
                self.seen[job_id] = record.state.value if record else "missing"

        return run


def test_each_ack_runs_after_its_end_is_in_redis_and_ends_are_written_together(store: StatusStore) -> None:
    writer = EndWriter(store)
    acks = Acks(store)
    jobs = [_running(store) for _ in range(40)]
    calls: list[int] = []
    finish_many = store.lifecycle.finish_succeeded_many

    def counted(ends: list[tuple[str, int, Any]]) -> list[bool | None]:
        calls.append(len(ends))
        return finish_many(ends)

    store.lifecycle.finish_succeeded_many = counted  # type: ignore[method-assign]
    gated = []
    for job_id in jobs:
        writer.submit(f"m-{job_id}", job_id, 1, {"n": 1})
        # Dramatiq asks for the ack right after the job's thread returns: the gate keeps it, unless
        # the end is written already (then Dramatiq acks at once)
        if writer.gate(f"m-{job_id}", acks.ack(job_id)):
            gated.append(job_id)
    wait_for(lambda: writer.pending() == 0, timeout=5)
    writer.stop()
    assert gated and sorted(acks.seen) == sorted(gated)
    for job_id in jobs:
        record = store.queries.get(job_id)
        assert record is not None and record.state is JobState.SUCCEEDED and record.result == {"n": 1}
    assert all(state == "succeeded" for state in acks.seen.values())  # never acked before its end was written
    assert sum(calls) == 40 and len(calls) < 40  # in batches, not one round trip each
    assert writer.gate("m-unknown", lambda: None) is False  # nothing pending: Dramatiq acks at once


def test_an_ack_asked_for_after_the_write_goes_ahead_at_once(store: StatusStore) -> None:
    writer = EndWriter(store)
    job_id = _running(store)
    writer.submit("m1", job_id, 1, None)
    wait_for(lambda: writer.pending() == 0, timeout=5)
    assert writer.gate("m1", lambda: None) is False
    writer.stop()


def test_while_redis_is_unreachable_nothing_is_acked_and_the_ends_are_written_once_it_answers(
    store: StatusStore,
) -> None:
    writer = EndWriter(store)
    acks = Acks(store)
    job_id = _running(store)
    outage = threading.Event()
    outage.set()
    finish_many = store.lifecycle.finish_succeeded_many
    tries: list[int] = []

    def flaky(ends: list[tuple[str, int, Any]]) -> list[bool | None]:
        tries.append(len(ends))
        if outage.is_set():
            raise StatusStoreUnavailable("The job status store (Redis) is unavailable.")
        return finish_many(ends)

    store.lifecycle.finish_succeeded_many = flaky  # type: ignore[method-assign]
    writer.submit("m1", job_id, 1, None)
    assert writer.gate("m1", acks.ack(job_id)) is True
    wait_for(lambda: len(tries) >= 3, timeout=5)
    assert acks.seen == {} and writer.pending() == 1
    outage.clear()
    wait_for(lambda: job_id in acks.seen, timeout=5)
    assert acks.seen[job_id] == "succeeded"
    writer.stop()


def test_against_a_redis_that_is_not_there_no_ack_ever_runs(servers: None) -> None:
    writer = EndWriter(StatusStore.from_url("redis://127.0.0.1:1/0"))
    acked: list[str] = []
    writer.submit("m1", str(uuid.uuid4()), 1, None)
    assert writer.gate("m1", lambda: acked.append("m1")) is True
    writer.flush()
    assert acked == [] and writer.pending() == 1


def test_a_call_the_server_refuses_is_reported_and_the_others_are_written(
    store: StatusStore, redis_client: redis.Redis
) -> None:
    good = _running(store)
    broken = str(uuid.uuid4())
    redis_client.set(store.keys.job(broken), "not a hash")  # every script on it fails: WRONGTYPE
    try:
        assert store.lifecycle.finish_succeeded_many([(good, 1, None), (broken, 1, None), (good, 1, None)]) == [
            True,
            None,
            False,  # the same attempt again: stale
        ]
    finally:
        redis_client.delete(store.keys.job(broken))
    record = store.queries.get(good)
    assert record is not None and record.state is JobState.SUCCEEDED
