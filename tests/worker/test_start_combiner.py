"""The start combiner: the starts of jobs begun at once share a round trip, each with its own outcome (real Redis)."""

from __future__ import annotations

import ctypes
import threading

import pytest
import redis

from offload.errors import StatusStoreUnavailable
from offload.status import JobState, Started, StatusStore
from offload.testing import wait_for
from offload.worker.start_combiner import StartCombiner
from tests.support import REDIS_URL, queued_record


@pytest.fixture
def store(redis_client: redis.Redis) -> StatusStore:
    return StatusStore.from_url(REDIS_URL, prefix="sc")


def _queued(store: StatusStore) -> str:
    return queued_record(store, max_retries=2)


class Gated:
    """``start_many`` against real Redis that holds its first call until released, counting batches."""

    def __init__(self, store: StatusStore, *, refuse: str | None = None, fail_first: bool = False) -> None:
        self.store = store
        self.batches: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.refuse = refuse
        self.fail_first = fail_first

    def __call__(self, job_ids: list[str]) -> list[Started | StatusStoreUnavailable]:
        self.batches.append(list(job_ids))
        if len(self.batches) == 1:
            self.entered.set()
            assert self.release.wait(10)
            if self.fail_first:
                raise StatusStoreUnavailable("The job status store (Redis) is unavailable.")
        outcomes = self.store.lifecycle.start_many(job_ids, max_unfinished=3)
        return [
            StatusStoreUnavailable("refused") if job_id == self.refuse else outcome
            for job_id, outcome in zip(job_ids, outcomes, strict=True)
        ]


def _starting(combiner: StartCombiner, job_id: str, into: dict[str, Started | BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            into[job_id] = combiner.start(job_id)
        except BaseException as exc:
            into[job_id] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_start_many_gives_each_job_the_outcome_start_gives_it(store: StatusStore) -> None:
    fresh, ended = _queued(store), _queued(store)
    assert store.lifecycle.start(ended, max_unfinished=3).outcome == "run"
    assert store.lifecycle.finish(ended, 1, JobState.SUCCEEDED, result=None)
    outcomes = store.lifecycle.start_many([fresh, ended, "no-such-job"], max_unfinished=3)
    assert [o.outcome for o in outcomes if isinstance(o, Started)] == ["run", "skip", "missing"]
    first = outcomes[0]
    assert isinstance(first, Started) and first.attempt == 1 and first.tenant == "acme" and first.max_retries == 2
    record = store.queries.get(fresh)
    assert record is not None and record.state is JobState.RUNNING


def test_a_lone_start_goes_at_once_and_starts_that_arrive_meanwhile_share_the_next_round_trip(
    store: StatusStore,
) -> None:
    gated = Gated(store)
    combiner = StartCombiner(gated)
    jobs = [_queued(store) for _ in range(6)]
    got: dict[str, Started | BaseException] = {}
    first = _starting(combiner, jobs[0], got)
    assert gated.entered.wait(5)  # the first start is under way, alone
    others = [_starting(combiner, job_id, got) for job_id in jobs[1:]]
    wait_for(lambda: len(combiner._waiting) == 5, timeout=5)
    gated.release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert gated.batches == [jobs[:1], jobs[1:]]  # two round trips for six starts
    for job_id in jobs:
        outcome = got[job_id]
        assert isinstance(outcome, Started) and outcome.outcome == "run" and outcome.attempt == 1
        record = store.queries.get(job_id)
        assert record is not None and record.state is JobState.RUNNING
    assert not combiner._leading  # nobody left waiting: the next start leads again
    assert combiner.start(_queued(store)).outcome == "run"


def test_a_start_the_server_refused_fails_alone_and_an_outage_fails_its_whole_batch_only(
    store: StatusStore,
) -> None:
    jobs = [_queued(store) for _ in range(4)]
    gated = Gated(store, refuse=jobs[2], fail_first=True)
    combiner = StartCombiner(gated)
    got: dict[str, Started | BaseException] = {}
    first = _starting(combiner, jobs[0], got)
    assert gated.entered.wait(5)
    others = [_starting(combiner, job_id, got) for job_id in jobs[1:]]
    wait_for(lambda: len(combiner._waiting) == 3, timeout=5)
    gated.release.set()
    for thread in [first, *others]:
        thread.join(5)
    assert isinstance(got[jobs[0]], StatusStoreUnavailable)  # the outage hit the first round trip only
    assert isinstance(got[jobs[2]], StatusStoreUnavailable)  # refused alone in the second
    assert all(isinstance(got[j], Started) and got[j].outcome == "run" for j in (jobs[1], jobs[3]))


def test_a_waiting_thread_interrupted_by_its_time_limit_strands_nobody(store: StatusStore) -> None:
    """Dramatiq's time limit raises inside the job's thread, wherever it is: here, while it waits its turn."""
    gated = Gated(store)
    combiner = StartCombiner(gated)
    jobs = [_queued(store) for _ in range(3)]
    got: dict[str, Started | BaseException] = {}
    first = _starting(combiner, jobs[0], got)
    assert gated.entered.wait(5)
    interrupted = _starting(combiner, jobs[1], got)
    wait_for(lambda: len(combiner._waiting) == 1, timeout=5)
    later = _starting(combiner, jobs[2], got)
    wait_for(lambda: len(combiner._waiting) == 2, timeout=5)
    ident = interrupted.ident
    assert ident is not None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(TimeoutError))
    # it lands once the thread runs Python again: when the lead is handed to it, below
    gated.release.set()
    for thread in (first, interrupted, later):
        thread.join(5)
        assert not thread.is_alive()
    assert isinstance(got[jobs[2]], Started) and got[jobs[2]].outcome == "run"
    assert isinstance(got[jobs[0]], Started)
    # the interrupted one withdrew before its start was sent, and handed the lead on: no hang
    assert isinstance(got[jobs[1]], TimeoutError)
