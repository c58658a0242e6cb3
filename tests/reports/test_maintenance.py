"""maintenance.cleanup exports dead letters before RabbitMQ's 7-day expiry drops them (D8)."""

from __future__ import annotations

import json

import dramatiq

from offload.publish import Publisher
from tests.helpers import wait_for
from tests.support import Api, RunningWorker, queue_depth


def _maintain(publisher: Publisher, older_than: int) -> dict:
    prepared = publisher.preparer.prepare(
        {"type": "maintenance.cleanup", "payload": {"dead_letters_older_than": older_than}},
        tenant="system",
        internal=True,
    )
    record = publisher.wait(publisher.enqueue(prepared).job_id, timeout=30)
    assert record is not None and record.state == "succeeded", record
    return dict(record.result)


def test_dead_letters_are_exported_to_storage_then_removed_and_young_ones_stay(
    api: Api, publisher: Publisher, worker: RunningWorker, reports_worker: dramatiq.Worker
) -> None:
    failed = [publisher.publish("system.fail", {"permanent": True}, tenant="acme").job_id for _ in range(3)]
    for job_id in failed:
        record = publisher.wait(job_id, timeout=20)
        assert record is not None and record.state == "failed"
    # Dramatiq dead-letters each message just after its job's record says failed.
    wait_for(lambda: queue_depth("system.XQ") == 3, timeout=10)

    kept = _maintain(publisher, older_than=3600)  # none is an hour old: nothing leaves
    assert kept["dead_letters"] == [] and queue_depth("system.XQ") == 3
    admin = api.as_("admin")
    assert admin.post("/v1/queues/system/pause").status_code == 200
    assert admin.post("/v1/queues/system/resume").status_code == 200

    result = _maintain(publisher, older_than=0)
    [export] = result["dead_letters"]
    assert export["queue"] == "system" and export["count"] == 3
    assert queue_depth("system.XQ") == 0
    download = api.anonymous_get(export["url"])
    assert download.status_code == 200
    lines = [json.loads(line) for line in download.data.decode().splitlines()]
    assert sorted(line["message"]["message_id"] for line in lines) == sorted(failed)
    assert all(line["reason"] == "rejected" and line["dead_lettered_at"] for line in lines)
    # The admin actions since the last export go with the dead letters, once.
    audited = [json.loads(line) for line in api.anonymous_get(result["audit"]["url"]).data.decode().splitlines()]
    assert [(e["action"], e["target"], e["actor"]) for e in audited][-2:] == [
        ("queue.pause", "system", "env key of ops"),
        ("queue.resume", "system", "env key of ops"),
    ]
    assert result["audit"]["count"] == len(audited)
    assert _maintain(publisher, older_than=0)["audit"] is None
