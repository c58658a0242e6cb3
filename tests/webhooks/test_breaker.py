"""The per-host circuit breaker: a failing receiver is paused, not hammered."""

from __future__ import annotations

import dramatiq
import pytest
import redis

from offload.errors import TransientJobError
from offload.publish import Publisher
from offload.status import StatusStore
from offload.status.breaker import CircuitBreaker
from tests.helpers import wait_for
from tests.support import RunningWorker
from tests.support.webhooks import Receiver


def test_repeated_failures_open_the_circuit_and_one_failure_after_the_cooldown_reopens_it(
    redis_client: redis.Redis,
) -> None:
    breaker = CircuitBreaker(StatusStore(redis_client, prefix="offloadtest"), threshold=3, cooldown=1)
    assert breaker.check("hooks.example.com") is False  # no history: a success need not be reported
    for _ in range(2):
        assert not breaker.failure("hooks.example.com")
    assert breaker.check("hooks.example.com") is True  # still closed, but failing lately
    assert breaker.failure("hooks.example.com")
    with pytest.raises(TransientJobError) as caught:
        breaker.check("hooks.example.com")
    assert caught.value.code == "circuit_open" and 0 < (caught.value.retry_after or 0) <= 1
    breaker.check("other.example.com")  # other hosts are not affected
    wait_for(lambda: redis_client.ttl("offloadtest:breaker:hooks.example.com:open") < 0, timeout=3)
    breaker.check("hooks.example.com")  # half-open: one call may go through
    assert breaker.failure("hooks.example.com")  # and a single failure opens it again
    breaker.success("hooks.example.com")
    assert breaker.check("hooks.example.com") is False  # trusted again


def test_a_receiver_that_keeps_failing_is_paused_after_the_threshold(
    publisher: Publisher,
    worker: RunningWorker,
    email_worker: dramatiq.Worker,
    receiver: Receiver,
    redis_client: redis.Redis,
) -> None:
    receiver.answers = [(500, {})]
    jobs = [publisher.publish("system.noop", {}, tenant="acme", callback_url=receiver.url).job_id for _ in range(8)]
    # The email worker's breaker opens after 5 failures to the host (its default threshold).
    wait_for(lambda: redis_client.exists(f"offload:breaker:127.0.0.1:{receiver.port}:open") == 1, timeout=20)
    deliveries = [r for r in publisher.store.queries.list_jobs(tenant="acme", job_type="webhook.deliver").records]

    def paused() -> int:
        return sum(publisher.get(d.id).error_code == "circuit_open" for d in deliveries)

    # Deliveries in flight when it opened may still land; by the first retry that meets the open
    # circuit (2 s of backoff later) they have.
    wait_for(lambda: paused() >= 1, timeout=10)
    calls = len(receiver.received)
    assert 5 <= calls <= 8
    wait_for(lambda: paused() >= 3, timeout=15)
    assert len(receiver.received) == calls  # paused: no new call while the circuit is open
    assert len(jobs) == 8
