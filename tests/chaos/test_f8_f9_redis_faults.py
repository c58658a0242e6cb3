"""F8 and F9: the status store goes away while clients submit and workers run.

F8: Redis is killed and comes back 4 s later from an ``appendfsync always`` file. The API writes the
record before it publishes, so while Redis is down it answers 503 ``status_store_unavailable`` at
once and publishes nothing; workers cannot record a start, so Dramatiq retries the delivery;
afterwards every accepted job ends, and none ran without its record.

F9: the same crash with ``appendfsync everysec``, which may lose the last second of writes. Lost
records or transitions must heal (a delivered message without a record is adopted; the state
machine only moves forward), so every accepted job still ends and none is left "queued" forever
(reliability-security.md §6.1 F8, F9).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.chaos.harness import FAST, SCALE, SLOW, Submitter, assert_common, drain, first_accepted_after, within
from tests.chaos.ledger import Ledger, finished, report, seconds_until_progress, succeeded_twice
from tests.support import AMQP_URL
from tests.system.stack import Api, PrivateRedis, Worker, stack_env


@pytest.fixture(params=["F8", "F9"], ids=["F8-fsync-always", "F9-fsync-everysec"])
def scenario_redis(request: pytest.FixtureRequest, servers, clean_broker, tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis", fsync="always" if request.param == "F8" else "everysec")
    server.start()
    yield server
    server.stop()


def test_redis_killed_under_load_gets_fast_503s_and_every_accepted_job_still_ends(
    scenario_redis: PrivateRedis, logs: Path
) -> None:
    scenario = "F8" if scenario_redis.fsync == "always" else "F9"
    env = stack_env(AMQP_URL, scenario_redis.url)
    api = Api(env, logs, workers=2)
    worker = Worker(env, logs, domain="email", threads=4)
    ledger = Ledger()
    client = redis.Redis.from_url(scenario_redis.url)
    submitter = Submitter(api, ledger)
    try:
        submitter.burst(150 * SCALE, SLOW)
        with submitter.steady(20, FAST) as during:
            time.sleep(1.5)
            down_at = time.monotonic()
            scenario_redis.kill()
            time.sleep(4 * SCALE)
            restart_at = time.monotonic()  # the outage ends here: Redis may answer before start() returns
            scenario_redis.start()
            up_at = time.monotonic()
            recovery = seconds_until_progress(lambda: finished(ledger, client), total=10**9, timeout=60)
            time.sleep(2)
        verdict = drain(ledger, client, timeout=90 * SCALE)
        refused = within(during, down_at + 0.2, restart_at)
        first_202 = first_accepted_after(during, up_at)
        slowest = max(a.seconds for a in refused) if refused else 0.0
        report(
            scenario,
            verdict,
            double_effects=len(succeeded_twice(ledger, client)),
            recovery_s=recovery,
            faults=1,
            outage_answers=len(refused),
            outage_503=sum(1 for a in refused if a.status == 503),
            slowest_outage_answer_s=round(slowest, 2),
            first_202_after_s=None if first_202 is None else round(first_202, 1),
        )
        assert_common(verdict)
        assert set(verdict.terminal) == {"succeeded"}, verdict.terminal
        assert refused and all(a.status == 503 and a.error == "status_store_unavailable" for a in refused), {
            (a.status, a.error) for a in refused
        }
        assert all(a.retry_after for a in refused)
        assert slowest <= 1.0, slowest
        assert first_202 is not None and first_202 <= 5
    finally:
        api.stop()
        worker.stop()
