"""F7: the broker raises a resource alarm (disk, then memory) while work is queued and clients submit.

RabbitMQ blocks publishing connections and keeps consumers going. The API must turn the block into a
fast 503 ``broker_backpressure`` (not a hang: pika would wait forever by default), the workers must
keep completing what was queued, and submissions must succeed again soon after the alarm clears
(reliability-security.md §6.1 F7).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.chaos.harness import FAST, SCALE, SLOW, Submitter, assert_common, drain, first_accepted_after, within
from tests.chaos.ledger import Ledger, finished, report, succeeded_twice
from tests.support import REDIS_URL
from tests.system.stack import Api, PrivateRabbitMQ, Worker, stack_env


@pytest.mark.serial  # it bounds answer times (2.5 s seen beside another test process): it runs alone
def test_f7_disk_and_memory_alarms_get_fast_503s_while_workers_keep_draining(
    private_rabbitmq: PrivateRabbitMQ, redis_client, logs: Path
) -> None:
    env = stack_env(private_rabbitmq.url, REDIS_URL)
    api = Api(env, logs, workers=2)
    worker = Worker(env, logs, domain="email", threads=4)
    ledger = Ledger()
    client = redis.Redis.from_url(REDIS_URL)
    submitter = Submitter(api, ledger)
    alarms: list[tuple[str, float, float, float, int]] = []  # name, raised, clearing, cleared, done
    raise_and_clear: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        (
            "disk",
            lambda: private_rabbitmq.ctl("set_disk_free_limit", "10000GB"),
            lambda: private_rabbitmq.ctl("set_disk_free_limit", "50MB"),
        ),
        (
            "memory",
            lambda: private_rabbitmq.ctl("set_vm_memory_high_watermark", "0.0001"),
            lambda: private_rabbitmq.ctl("set_vm_memory_high_watermark", "0.4"),
        ),
    ]
    try:
        with submitter.steady(10, FAST) as during:
            for name, set_alarm, clear_alarm in raise_and_clear:
                submitter.burst(100 * SCALE, SLOW)  # queued work for the workers to go on with
                set_alarm()
                start, done_before = time.monotonic(), finished(ledger, client)
                time.sleep(4 * SCALE)
                done_during = finished(ledger, client) - done_before
                # The alarm ends somewhere inside clear_alarm() (rabbitmqctl boots, then asks the
                # node): answers are judged up to the call, recovery is timed from its return.
                clearing = time.monotonic()
                clear_alarm()
                alarms.append((name, start, clearing, time.monotonic(), done_during))
            time.sleep(3)
        verdict = drain(ledger, client, timeout=60 * SCALE)
        refused = [a for _, start, clearing, _, _ in alarms for a in within(during, start + 0.5, clearing)]
        first_202 = [first_accepted_after(during, cleared) for _, _, _, cleared, _ in alarms]
        slowest = max(a.seconds for a in during)
        report(
            "F7",
            verdict,
            double_effects=len(succeeded_twice(ledger, client)),
            recovery_s=max((s for s in first_202 if s is not None), default=None),
            faults=len(alarms),
            alarm_answers=len(refused),
            alarm_503=sum(1 for a in refused if a.status == 503),
            completed_during_alarms=sum(d for *_, d in alarms),
            slowest_answer_s=round(slowest, 2),
        )
        assert_common(verdict)
        assert refused and all(a.status == 503 and a.error == "broker_backpressure" for a in refused), {
            (a.status, a.error) for a in refused
        }
        assert all(a.retry_after for a in refused)
        assert slowest <= 2.5, slowest
        # Consumers are not blocked: queued jobs kept completing during each alarm.
        assert all(done_during > 0 for *_, done_during in alarms), alarms
        assert all(s is not None and s <= 15 for s in first_202), first_202
    finally:
        api.stop()
        worker.stop()
