"""The Redis status store: forward-only transitions, retention, indexes, events, scheduling."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import redis

from offload.errors import StatusStoreUnavailable
from offload.status import JobState, Retention, StatusStore, now_ms
from offload.status.feeds import FEED_MAX_AGE
from tests.support import REDIS_URL


@pytest.fixture
def store(redis_client: redis.Redis) -> StatusStore:
    return StatusStore.from_url(REDIS_URL, prefix="t", retention=Retention(succeeded=100, failed=200))


def _create(store: StatusStore, *, tenant: str = "acme", job_type: str = "system.noop", **kw) -> str:
    job_id = str(uuid.uuid4())
    fields: dict[str, str | int] = {
        "tenant": tenant,
        "type": job_type,
        "queue": "system",
        "created_at": now_ms(),
        "max_retries": 1,
        "payload": "{}",
    }
    assert store.lifecycle.create(job_id, fields, **kw).outcome == "created"
    return job_id


def test_create_writes_a_queued_record_with_one_history_entry(store: StatusStore) -> None:
    job_id = _create(store)
    record = store.queries.get(job_id)
    assert record is not None and record.state is JobState.QUEUED and record.seq == 1
    assert [e["state"] for e in store.queries.history(job_id)] == ["queued"]


def test_a_job_runs_through_running_to_succeeded_and_gets_its_retention(store: StatusStore, redis_client) -> None:
    job_id = _create(store)
    started = store.lifecycle.start(job_id, max_unfinished=3)
    assert started.outcome == "run" and started.attempt == 1 and started.tenant == "acme"
    assert redis_client.ttl(f"t:job:{job_id}") == -1  # active jobs never expire
    assert store.lifecycle.finish(job_id, 1, JobState.SUCCEEDED, result={"n": 1})
    record = store.queries.get(job_id)
    assert record.state is JobState.SUCCEEDED and record.result == {"n": 1} and record.progress == 100
    assert 0 < redis_client.ttl(f"t:job:{job_id}") <= 100
    assert [e["state"] for e in store.queries.history(job_id)] == ["queued", "running", "succeeded"]


def test_finished_jobs_never_move_backwards(store: StatusStore) -> None:
    job_id = _create(store)
    store.lifecycle.start(job_id, max_unfinished=3)
    store.lifecycle.finish(job_id, 1, JobState.SUCCEEDED)
    # Given a duplicate delivery of a succeeded job, when a worker starts it, then it is skipped.
    assert store.lifecycle.start(job_id, max_unfinished=3).outcome == "skip"
    assert not store.lifecycle.finish(job_id, 1, JobState.FAILED, error=("x", "y"))
    assert store.queries.get(job_id).state is JobState.SUCCEEDED


def test_a_stale_attempt_cannot_finish_the_job(store: StatusStore) -> None:
    job_id = _create(store)
    store.lifecycle.start(job_id, max_unfinished=3)
    store.lifecycle.start(job_id, max_unfinished=3)  # redelivered while attempt 1 still "ran"
    assert not store.lifecycle.finish(job_id, 1, JobState.SUCCEEDED)
    assert store.lifecycle.finish(job_id, 2, JobState.SUCCEEDED)
    history = store.queries.history(job_id)
    assert history[2]["redelivered"] is True and history[2]["attempt"] == 2


def test_the_rerun_of_a_cut_attempt_is_an_attempt_but_not_a_try_of_the_retry_policy(store: StatusStore) -> None:
    job_id = _create(store)
    first = store.lifecycle.start(job_id, max_unfinished=5)
    assert (first.attempt, first.try_number) == (1, 1)
    store.lifecycle.finish(job_id, 1, JobState.RETRYING, error=("e", "m"), retry_at=now_ms())
    second = store.lifecycle.start(job_id, max_unfinished=5)
    rerun = store.lifecycle.start(job_id, max_unfinished=5)  # its worker was killed while it ran
    assert (second.attempt, second.try_number) == (2, 2) and (rerun.attempt, rerun.try_number) == (3, 2)
    store.lifecycle.finish(job_id, 3, JobState.RETRYING, error=("e", "m"), retry_at=now_ms())
    third = store.lifecycle.start(job_id, max_unfinished=5)
    assert (third.attempt, third.try_number) == (4, 3)


def test_too_many_unfinished_deliveries_make_a_job_dead(store: StatusStore) -> None:
    job_id = _create(store)
    for _ in range(3):
        assert store.lifecycle.start(job_id, max_unfinished=3).outcome == "run"
    dead = store.lifecycle.start(job_id, max_unfinished=3)
    assert dead.outcome == "dead"
    record = store.queries.get(job_id)
    assert record.state is JobState.DEAD and record.error_code == "too_many_deliveries"


def test_finished_attempts_reset_the_unfinished_count(store: StatusStore) -> None:
    job_id = _create(store)
    for attempt in range(1, 6):
        assert store.lifecycle.start(job_id, max_unfinished=2).outcome == "run"
        store.lifecycle.finish(job_id, attempt, JobState.RETRYING, error=("e", "m"), retry_at=now_ms())
    assert store.queries.get(job_id).state is JobState.RETRYING


def test_retrying_schedules_the_job_and_claiming_leases_it(store: StatusStore) -> None:
    job_id = _create(store)
    store.lifecycle.start(job_id, max_unfinished=3)
    store.lifecycle.finish(job_id, 1, JobState.RETRYING, error=("boom", "Boom."), retry_at=now_ms() - 1)
    claim = store.timers.claim_due(limit=10, lease_ms=60_000)
    assert [c[0] for c in claim.jobs] == [job_id]
    assert store.timers.claim_due(limit=10, lease_ms=60_000).jobs == []  # leased, not claimed twice
    assert store.queries.get(job_id).state is JobState.RETRYING  # retrying stays retrying until it runs
    assert store.timers.promoted(job_id, claim.lease)
    assert store.timers.next_due() is None


def test_releasing_a_lease_never_removes_a_newer_retry(store: StatusStore) -> None:
    # Given a claimed retry whose message ran, failed again and was scheduled anew before the
    # promoter released its claim,
    job_id = _create(store)
    store.lifecycle.start(job_id, max_unfinished=3)
    store.lifecycle.finish(job_id, 1, JobState.RETRYING, error=("e", "m"), retry_at=now_ms() - 1)
    claim = store.timers.claim_due(limit=10)
    store.lifecycle.start(job_id, max_unfinished=3)
    store.lifecycle.finish(job_id, 2, JobState.RETRYING, error=("e", "m"), retry_at=now_ms() + 5_000)
    # when the promoter releases the old claim, then the new retry is still scheduled.
    assert not store.timers.promoted(job_id, claim.lease)
    assert store.timers.next_due() is not None


def test_a_delayed_job_is_scheduled_then_promoted_to_queued(store: StatusStore) -> None:
    job_id = _create(store, scheduled_for=now_ms() + 3_600_000)
    assert store.queries.get(job_id).state is JobState.SCHEDULED
    assert store.timers.claim_due(limit=10).jobs == []
    store.client.zadd("t:scheduled", {job_id: now_ms() - 1})  # time passes
    claim = store.timers.claim_due(limit=10)
    assert [c[0] for c in claim.jobs] == [job_id]
    assert [e["state"] for e in store.queries.history(job_id)] == ["scheduled", "queued"]
    assert store.timers.promoted(job_id, claim.lease)
    assert store.timers.next_due() is None


def test_cancel_of_a_waiting_job_is_immediate_and_of_a_running_one_is_a_request(store: StatusStore) -> None:
    waiting = _create(store, scheduled_for=now_ms() + 60_000)
    assert store.lifecycle.cancel(waiting, tenant="acme") == ("cancelled", None)
    assert store.timers.next_due() is None
    running = _create(store)
    store.lifecycle.start(running, max_unfinished=3)
    assert store.lifecycle.cancel(running, tenant="acme") == ("requested", None)
    assert store.lifecycle.progress(running, 1, 50) == ("running", True)
    assert store.lifecycle.cancel(running, tenant="globex") == ("missing", None)


def test_reopen_moves_a_failed_job_back_to_queued_and_keeps_it(store: StatusStore, redis_client) -> None:
    job_id = _create(store)
    store.lifecycle.start(job_id, max_unfinished=3)
    store.lifecycle.finish(job_id, 1, JobState.FAILED, error=("e", "m"))
    outcome, message = store.lifecycle.reopen(job_id, tenant="acme")
    assert outcome == "queued" and json.loads(message)["queue_name"] == "system"
    assert redis_client.ttl(f"t:job:{job_id}") == -1
    assert store.lifecycle.reopen(job_id, tenant="acme") == ("state", "queued")


def test_abort_leaves_a_job_a_worker_took_and_says_so(store: StatusStore) -> None:
    job_id = _create(store)
    assert store.lifecycle.start(job_id, max_unfinished=3).outcome == "run"
    assert store.lifecycle.abort(job_id, tenant="acme") == "taken"
    record = store.queries.get(job_id)
    assert record is not None and record.state == "running"
    assert store.lifecycle.abort("no-such-job", tenant="acme") == "missing"


def test_abort_removes_an_untouched_record_and_leaves_a_tombstone(store: StatusStore) -> None:
    job_id = _create(store, idempotency_key="k1", fingerprint="f")
    assert store.lifecycle.abort(job_id, tenant="acme", idempotency_key="k1") == "withdrawn"
    assert store.queries.get(job_id) is None
    assert store.lifecycle.start(job_id, max_unfinished=3).outcome == "aborted"
    assert store.queries.list_jobs(tenant="acme").records == []
    # The idempotency key is free again: the client may retry with it.
    again = _create(store, idempotency_key="k1", fingerprint="f")
    assert again != job_id


def test_idempotency_key_returns_the_same_job_or_a_conflict(store: StatusStore) -> None:
    first = _create(store, idempotency_key="k", fingerprint="same")
    fields: dict[str, str | int] = {"tenant": "acme", "type": "system.noop", "queue": "system", "created_at": now_ms()}
    assert store.lifecycle.create(str(uuid.uuid4()), fields, idempotency_key="k", fingerprint="same").job_id == first
    conflict = store.lifecycle.create(str(uuid.uuid4()), fields, idempotency_key="k", fingerprint="other")
    assert conflict.outcome == "conflict" and conflict.job_id == first


def test_listing_filters_by_tenant_state_and_type_and_pages_with_a_cursor(store: StatusStore) -> None:
    ids = [_create(store) for _ in range(7)]
    other = _create(store, job_type="system.sleep")
    _create(store, tenant="globex")
    store.lifecycle.start(ids[0], max_unfinished=3)
    assert {r.id for r in store.queries.list_jobs(tenant="acme", state=JobState.RUNNING).records} == {ids[0]}
    assert [r.id for r in store.queries.list_jobs(tenant="acme", job_type="system.sleep").records] == [other]
    seen, cursor = [], None
    while True:
        page = store.queries.list_jobs(tenant="acme", limit=3, cursor=cursor)
        seen += [r.id for r in page.records]
        if page.cursor is None:
            break
        cursor = page.cursor
    assert sorted(seen) == sorted([*ids, other]) and len(seen) == len(set(seen))
    assert len(store.queries.list_jobs(tenant=None, limit=100).records) == 9


def test_listing_drops_index_entries_of_expired_records(store: StatusStore) -> None:
    job_id = _create(store)
    store.client.delete(f"t:job:{job_id}")
    assert store.queries.list_jobs(tenant="acme").records == []
    assert store.client.zscore("t:idx:acme:t:system.noop:s:queued", job_id) is None


def test_every_change_is_published_on_the_job_channel(store: StatusStore) -> None:
    job_id = _create(store)
    pubsub = store.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(store.queries.events_channel(job_id))
    pubsub.get_message(timeout=1)
    store.lifecycle.start(job_id, max_unfinished=3)
    store.lifecycle.progress(job_id, 1, 40, "almost")
    store.lifecycle.finish(job_id, 1, JobState.SUCCEEDED)
    events = []
    while (message := pubsub.get_message(timeout=1)) is not None:
        events.append(json.loads(message["data"]))
    pubsub.close()
    assert [(e["kind"], e["state"], e["seq"]) for e in events] == [
        ("state", "running", 2),
        ("progress", "running", 3),
        ("state", "succeeded", 4),
    ]


def test_an_unreachable_redis_raises_status_store_unavailable(servers) -> None:
    store = StatusStore.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(StatusStoreUnavailable):
        store.queries.get("x")


def _ended(store: StatusStore, state: JobState) -> str:
    job_id = _create(store)
    store.lifecycle.start(job_id, max_unfinished=3)
    store.lifecycle.finish(job_id, 1, state, error=("e", "m") if state is not JobState.SUCCEEDED else None)
    return job_id


def test_trimming_drops_each_finished_state_at_its_retention_and_never_a_live_job(store: StatusStore) -> None:
    # Given succeeded jobs (kept 100 s), failed ones (kept 200 s) and a job still waiting,
    succeeded = [_ended(store, JobState.SUCCEEDED) for _ in range(3)]
    failed = [_ended(store, JobState.FAILED) for _ in range(2)]
    live = _create(store, scheduled_for=now_ms() + 86_400_000)
    # when trimming runs 150 s on, the succeeded jobs leave both of their indexes
    assert store.janitor.trim_indexes(now=now_ms() + 150_000) == 3 * 2  # its tenant's and all tenants' index
    assert store.client.zrange("t:idx:acme:t:system.noop:s:succeeded", 0, -1) == []
    assert all(store.queries.get(job_id) is not None for job_id in succeeded)  # the records' own TTL is Redis's
    assert store.client.zrange("t:idx:_all:t:system.noop:s:succeeded", 0, -1) == []
    assert sorted(store.client.zrange("t:idx:acme:t:system.noop:s:failed", 0, -1)) == sorted(failed)
    assert store.janitor.trim_indexes(now=now_ms() + 150_000) is None  # another trim within the lock is skipped
    # and 250 s on, the failed ones too; the waiting job stays listed throughout.
    store.client.delete("t:trim-lock")
    # Their error indexes go with them (kept as long as the longest retention), and their code is forgotten.
    assert sorted(store.client.zrange("t:erridx:acme:e", 0, -1)) == sorted(failed)
    assert store.janitor.trim_indexes(now=now_ms() + 250_000) == 2 * 2 + 2 * 2
    assert [r.id for r in store.queries.list_jobs(tenant="acme").records] == [live]
    assert store.client.smembers("t:types:acme") == {"system.noop"}  # a type still listed is remembered
    assert store.client.exists("t:erridx:acme:e", "t:erridx:_all:e", "t:errors:acme", "t:errors:_all") == 0


def test_dead_letter_reasons_come_from_records_then_notes_in_one_round_trip(store: StatusStore) -> None:
    # Given a failed job, a refused one with field problems, a retried one, a noted id and nothing.
    failed = _create(store)
    store.lifecycle.start(failed, max_unfinished=3)
    store.lifecycle.finish(failed, 1, JobState.FAILED, error=("error", "Boom on the last attempt"))
    fields: dict[str, str | int] = {"tenant": "acme", "type": "system.sleep", "queue": "system", "created_at": now_ms()}
    refused = str(uuid.uuid4())
    problems = [{"field": "payload.ms", "problem": "Input should be a valid integer"}]
    store.lifecycle.refuse(refused, fields, ("validation_failed", "Invalid payload."), errors=problems)
    retried = _create(store)
    store.janitor.note_dead_letter("order-42", "invalid_job_id", "kwargs.job_id must be a UUID.")
    long_id = "x" * 5000
    store.janitor.note_dead_letter(long_id, "invalid_job_id", "Too long.")

    # When the reasons of all of them are read
    reasons = store.janitor.dead_letter_reasons([failed, refused, retried, "order-42", long_id, str(uuid.uuid4())])

    # Then each says what Offload recorded, and the record wins over nothing
    assert [r.code if r else None for r in reasons] == [
        "error",
        "validation_failed",
        None,
        "invalid_job_id",
        "invalid_job_id",
        None,
    ]
    assert reasons[0] is not None and reasons[0].recorded and reasons[0].state == "failed"
    assert reasons[0].message == "Boom on the last attempt" and reasons[0].attempts == 1
    assert reasons[1] is not None and reasons[1].errors == problems and reasons[1].state == "dead"
    assert reasons[2] is not None and reasons[2].recorded and reasons[2].state == "queued"
    assert reasons[3] is not None and not reasons[3].recorded and reasons[3].message == "kwargs.job_id must be a UUID."
    assert reasons[5] is None
    assert store.janitor.dead_letter_reasons([]) == []


def _bytes(client: redis.Redis, pattern: str) -> int:
    """The memory of the keys matching ``pattern``, but the tenants' change feeds (a window of their own)."""
    keys = [key for key in client.scan_iter(pattern, count=1000) if ":feed:" not in key]
    return sum(int(client.memory_usage(key) or 0) for key in keys)


def test_a_short_soak_gives_back_the_memory_of_expired_jobs_while_failed_ones_stay_listed(redis_client) -> None:
    """The default suite's slice of `make bench --only scale`'s soak (issue 28): failed records first,
    then succeeded no-ops kept 2 s; once they expire and the trim runs, their records and index
    entries are gone, however many there were, and the failed ones are still listed."""
    store = StatusStore.from_url(REDIS_URL, prefix="t", retention=Retention(succeeded=2, failed=600))
    failed = [_ended(store, JobState.FAILED) for _ in range(50)]
    before = _bytes(store.client, "t:*")
    succeeded = [_ended(store, JobState.SUCCEEDED) for _ in range(1_500)]
    grown = _bytes(store.client, "t:*") - before
    assert grown / len(succeeded) <= 1_000  # a retained succeeded no-op, record and index entries
    time.sleep(2.5)  # their records expire (Redis's own TTL)
    assert store.janitor.trim_indexes() == 2 * len(succeeded)
    assert _bytes(store.client, "t:*") - before <= 0.1 * grown
    page = store.queries.list_jobs(tenant="acme", limit=100)
    assert sorted(r.id for r in page.records) == sorted(failed) and page.cursor is None
    # The tenant's change feed is a window of its last changes, not kept per job: the trim drops
    # what is older than its age, whatever its length.
    assert store.client.xlen(store.keys.feed("acme")) > 0
    store.client.delete(store.keys.trim_lock)
    store.janitor.trim_indexes(now=now_ms() + FEED_MAX_AGE * 1000 + 60_000)
    assert store.client.xlen(store.keys.feed("acme")) == 0


def test_a_mass_expiry_is_trimmed_in_bounded_steps(store: StatusStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """No trim call holds Redis for long: each removes at most TRIM_STEP entries, and the trim goes on."""
    import offload.status.janitor as module

    monkeypatch.setattr(module, "TRIM_STEP", 3)
    calls: list[str] = []
    run = store.janitor._run

    def counted(name: str, *args: Any) -> Any:
        calls.append(name)
        return run(name, *args)

    monkeypatch.setattr(store.janitor, "_run", counted)
    for _ in range(5):
        _ended(store, JobState.SUCCEEDED)
    assert store.janitor.trim_indexes(now=now_ms() + 150_000) == 5 * 2
    assert calls.count("trim") == 4  # _all: 3, then 2 and done; acme the same
    assert store.queries.list_jobs(tenant=None).records == []
