"""Upgrading in place (issue 28): records and indexes written by layout 1 are brought to layout 2,
and every job stays listable, readable and runnable."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import redis
from redis.typing import EncodableT, FieldT

from offload.status import JobState, Retention, StatusStore, now_ms
from tests.helpers import VENV_BIN
from tests.support import REDIS_URL


def _layout1_job(client: redis.Redis, *, tenant: str, state: str, created_at: int, ttl_ms: int = 0) -> str:
    """Write a job as Offload up to layout 1 did: the message in the hash, a history list beside it,
    and five indexes scored by creation (three of them never trimmed by retention)."""
    job_id = str(uuid.uuid4())
    message = {
        "queue_name": "system",
        "actor_name": "system.noop",
        "args": [],
        "kwargs": {"job_id": job_id, "payload": {"echo": tenant}},
        "options": {"broker_priority": 2, "offload": {"v": 1, "tenant": tenant}},
        "message_id": job_id,
        "message_timestamp": created_at,
    }
    finished = state in ("succeeded", "failed")
    fields: dict[FieldT, EncodableT] = {
        "id": job_id,
        "tenant": tenant,
        "type": "system.noop",
        "queue": "system",
        "priority": "normal",
        "max_retries": 0,
        "created_at": created_at,
        "message": json.dumps(message, separators=(",", ":")),
        "state": state,
        "seq": 3 if finished else 1,
        "attempts": 1 if finished else 0,
        "progress": 100 if finished else 0,
        "updated_at": created_at + 50,
    }
    history = [{"seq": 1, "kind": "state", "state": "queued", "at": created_at, "attempt": 0, "progress": 0}]
    if finished:
        fields["finished_at"] = created_at + 50
        history += [
            {"seq": 2, "kind": "state", "state": "running", "at": created_at + 10, "attempt": 1, "progress": 0},
            {
                "seq": 3,
                "kind": "state",
                "state": state,
                "at": created_at + 50,
                "attempt": 1,
                "progress": 100,
                **({"error": {"code": "boom", "message": "It broke | badly."}} if state == "failed" else {}),
            },
        ]
    key = f"t:job:{job_id}"
    client.hset(key, mapping=fields)
    client.rpush(f"{key}:history", *(json.dumps(entry) for entry in history))
    if ttl_ms:
        client.pexpire(key, ttl_ms)
        client.pexpire(f"{key}:history", ttl_ms)
    for index in (f"t:idx:{tenant}", f"t:idx:{tenant}:t:system.noop", f"t:idx:{tenant}:s:{state}", "t:idx:_all"):
        client.zadd(index, {job_id: created_at})
    client.zadd(f"t:idx:_all:s:{state}", {job_id: created_at})
    client.sadd("t:tenants", tenant)
    return job_id


def test_a_layout_1_deployment_upgraded_in_place_keeps_every_job_listable(redis_client: redis.Redis) -> None:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    store = StatusStore.from_url(REDIS_URL, prefix="t", retention=Retention(succeeded=100, failed=200))
    start = now_ms() - 60_000
    # Given what layout 1 left: live and finished jobs of two tenants, and index entries of a
    # record that expired (never trimmed from the unfiltered indexes),
    queued = _layout1_job(client, tenant="acme", state="queued", created_at=start)
    done = _layout1_job(client, tenant="acme", state="succeeded", created_at=start + 1, ttl_ms=90_000)
    failed = _layout1_job(client, tenant="globex", state="failed", created_at=start + 2, ttl_ms=190_000)
    expired = _layout1_job(client, tenant="acme", state="succeeded", created_at=start + 3)
    client.delete(f"t:job:{expired}", f"t:job:{expired}:history")

    # when the store migrates (as every worker's promoter does on its first loop),
    assert store.janitor.migrate_layout() == 3
    assert store.janitor.migrate_layout() is None  # done once: the layout is marked

    # then every job is listed for its tenant and for admins, by state and type, newest first,
    assert [r.id for r in store.queries.list_jobs(tenant="acme").records] == [done, queued]
    assert [r.id for r in store.queries.list_jobs(tenant=None, state=JobState.FAILED).records] == [failed]
    assert [r.id for r in store.queries.list_jobs(tenant="globex", job_type="system.noop").records] == [failed]
    # its history reads as before (a "|" inside an error message included), its TTL is kept,
    history = store.queries.history(failed)
    assert [e["state"] for e in history] == ["queued", "running", "failed"]
    assert history[-1]["error"] == {"code": "boom", "message": "It broke | badly."}
    assert 100 < client.pttl(f"t:job:{failed}") <= 190_000 and client.exists(f"t:job:{failed}:history") == 0
    # its message can still be published again, byte for byte,
    assert store.queries.stored_message(queued) == str(client.hget(f"t:job:{queued}", "message")).encode()
    # and nothing is left of layout 1's indexes or of the expired record's entries.
    leftovers = sorted(k for k in client.scan_iter("t:idx:*") if ":t:" not in k)
    assert leftovers == []
    assert not any(client.zscore(k, expired) for k in client.scan_iter("t:idx:*"))
    # A job that runs on is written in layout 2 and finishes where lists and trimming expect it.
    assert store.lifecycle.start(queued, max_unfinished=3).outcome == "run"
    assert store.lifecycle.finish(queued, 1, JobState.SUCCEEDED, result={})
    assert [e["state"] for e in store.queries.history(queued)] == ["queued", "running", "succeeded"]
    assert [r.id for r in store.queries.list_jobs(tenant="acme", state=JobState.SUCCEEDED).records] == [queued, done]


def test_offload_migrate_does_it_by_hand(redis_client: redis.Redis) -> None:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    job_id = _layout1_job(client, tenant="acme", state="queued", created_at=now_ms())
    env = {**os.environ, "OFFLOAD_REDIS_URL": REDIS_URL, "OFFLOAD_REDIS_PREFIX": "t", "OFFLOAD_ENV": "test"}
    done = subprocess.run(
        [str(VENV_BIN / "offload"), "migrate"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout)["migrated"] == 1
    store = StatusStore.from_url(REDIS_URL, prefix="t")
    assert [r.id for r in store.queries.list_jobs(tenant="acme").records] == [job_id]
    again = subprocess.run([str(VENV_BIN / "offload"), "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(again.stdout)["migrated"] is None
