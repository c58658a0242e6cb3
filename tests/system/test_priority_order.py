"""Priorities work (issue 22): with 300 ``low`` jobs queued before a busy worker process, 10 ``high``
ones published after them start before the ``low`` ones still waiting, but for the few messages
the worker had already prefetched. Real RabbitMQ (``x-max-priority`` queues), Redis and a
``dramatiq`` worker process; the order is read from the start times the worker recorded."""

from __future__ import annotations

import time
from pathlib import Path

from offload.publish import Publisher
from offload.status import JobState
from tests.helpers import wait_for
from tests.system.stack import Worker

LOW, HIGH = 300, 10
#: Each job sleeps this long: 300 of them keep a worker of 2 threads busy about 5 s.
SLEEP_MS = 30
THREADS = 2
#: The low jobs a worker may start after the high ones were published and before the last high one
#: started: the messages it had prefetched (Dramatiq's prefetch is 2 per thread), the ones its
#: threads were about to run, and as many again for room.
PREFETCHED = 4 * THREADS + 4


def _started_ms(publisher: Publisher, ids: list[str]) -> dict[str, int]:
    records = {job_id: publisher.get(job_id) for job_id in ids}
    return {job_id: record.started_at for job_id, record in records.items() if record and record.started_at}


def test_high_jobs_published_after_300_low_ones_start_before_the_low_ones_still_waiting(
    env: dict[str, str], logs: Path, publisher: Publisher
) -> None:
    worker = Worker(env, logs, domain="email", threads=THREADS, queues=("system",))
    try:
        job = {"type": "system.sleep", "payload": {"ms": SLEEP_MS, "steps": 1}, "options": {"priority": "low"}}
        lows = [
            submitted.job_id
            for _ in range(LOW // 100)
            for submitted in publisher.submit_batch([job] * 100, tenant="acme").jobs
        ]
        published_high_at = int(time.time() * 1000)
        high = {**job, "options": {"priority": "high"}}
        highs = [submitted.job_id for submitted in publisher.submit_batch([high] * HIGH, tenant="acme").jobs]

        def all_done() -> bool:
            records = [publisher.get(job_id) for job_id in [*lows, *highs]]
            return all(record is not None and record.state is JobState.SUCCEEDED for record in records)

        wait_for(all_done, timeout=90, interval=0.5, message="the jobs did not all succeed")
    finally:
        worker.stop()

    low_starts, high_starts = _started_ms(publisher, lows), _started_ms(publisher, highs)
    waiting = [start for start in low_starts.values() if start >= published_high_at]
    # The test means something only if many low jobs were still waiting when the high ones came.
    assert len(waiting) >= 100, f"only {len(waiting)} low jobs were still waiting; the worker was too quick"
    last_high = max(high_starts.values())
    overtaken = [start for start in waiting if start < last_high]
    assert len(overtaken) <= PREFETCHED, (
        f"{len(overtaken)} of the {len(waiting)} waiting low jobs started before the last high one"
    )
