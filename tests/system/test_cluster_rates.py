"""Limits across API processes (issue 23): two real ``offload-api`` processes, one tenant hammered
through both, are held together to the tenant's one configured rate (±10 %); and a job type's
hourly quota, counted in Redis, is one quota for both."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import uuid
from pathlib import Path

from offload.publish import Publisher
from tests.support import KEYS, make_settings
from tests.support.email import register_email_worker
from tests.system.stack import Api

log = logging.getLogger(__name__)

RATE = 100.0
BURST = 20
HAMMER_S = 4.0
#: Keep-alive connections hammering each process.
CONNECTIONS = 3
WELCOME = {"to": [{"email": "ann@example.com", "name": "Ann"}], "template": "welcome", "vars": {"name": "Ann"}}


def _hammer(port: int, deadline: float, answers: list[tuple[int, str, str]]) -> None:
    """Ask for a job on one keep-alive connection until ``deadline``; record (status, error, Retry-After).

    A read of a job that does not exist (404) is one Redis read, so the connections spend their
    time asking, not waiting for a broker's confirm, and the rate limit is what bounds the answers.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {KEYS['acme']}"}
    try:
        while time.monotonic() < deadline:
            connection.request("GET", f"/v1/jobs/{uuid.uuid4()}", headers=headers)
            response = connection.getresponse()
            answer = json.loads(response.read() or b"{}")
            answers.append((response.status, str(answer.get("error", "")), response.getheader("Retry-After", "")))
    finally:
        connection.close()


def test_two_api_processes_hold_one_tenant_to_its_configured_rate(env: dict[str, str], logs: Path) -> None:
    limited = {**env, "OFFLOAD_TENANT_RATE_LIMIT": str(RATE), "OFFLOAD_TENANT_RATE_BURST": str(BURST)}
    apis = [Api(limited, logs), Api(limited, logs)]
    try:
        for api in apis:  # warm: the first request of a process loads what it serves with
            assert api.request("GET", f"/v1/jobs/{uuid.uuid4()}", who="globex")[0] == 404
        by_api: list[list[tuple[int, str, str]]] = [[], []]
        started = time.monotonic()
        deadline = started + HAMMER_S
        threads = [
            threading.Thread(target=_hammer, args=(api.port, deadline, by_api[i]))
            for i, api in enumerate(apis)
            for _ in range(CONNECTIONS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HAMMER_S + 20)
        elapsed = time.monotonic() - started
    finally:
        for api in apis:
            api.stop()
    answers = by_api[0] + by_api[1]
    accepted = [sum(status == 404 for status, _, _ in one) for one in by_api]  # let through: the job is unknown
    refused = [answer for answer in answers if answer[0] != 404]
    assert {(status, error) for status, error, _ in refused} == {(429, "rate_limited")}
    assert {retry_after for _, _, retry_after in refused} == {"1"}  # the next request is 10 ms away: 1 s
    rate = (sum(accepted) - BURST) / elapsed
    log.info(
        "accepted %s of %d in %.2f s: %.1f/s beyond the burst (limit %s/s)", accepted, len(answers), elapsed, rate, RATE
    )
    assert len(answers) > 3 * sum(accepted)  # the tenant was offered well over its rate
    assert 0.9 * RATE <= rate <= 1.1 * RATE, (accepted, elapsed, rate)
    assert min(accepted) > 0.15 * sum(accepted)  # both processes took from the one rate


def test_a_job_types_hourly_quota_is_one_quota_across_api_processes(env: dict[str, str], logs: Path) -> None:
    publisher = Publisher.from_settings(make_settings())
    try:
        register_email_worker(publisher, email_quota_per_hour=5)  # before the APIs boot: they read it at once
    finally:
        publisher.close()
    apis = [Api(env, logs), Api(env, logs)]
    try:
        statuses = [
            apis[i % 2].request("POST", "/v1/jobs", {"type": "email.send", "payload": WELCOME}) for i in range(8)
        ]
        globex = apis[1].request("POST", "/v1/jobs", {"type": "email.send", "payload": WELCOME}, who="globex")
    finally:
        for api in apis:
            api.stop()
    assert [status for status, _, _ in statuses] == [202] * 5 + [429] * 3  # 3 through one process, 2 the other
    assert {body["error"] for status, _, body in statuses if status == 429} == {"quota_exceeded"}
    assert globex[0] == 202  # another tenant's quota
