"""F13: duplicate submissions and duplicate deliveries never become duplicate effects.

(a) Five concurrent submissions with one ``Idempotency-Key`` make one job and five identical ids.
(b) The same key with another body is 409 ``idempotency_key_reused``.
(c) Every acked email message is published again, straight to its queue: the worker sees the job is
    finished and skips it, so the SMTP server holds each ``Message-ID`` once.
(d) Redeliveries forced by a partition are F6's; by a crash after the SMTP server took the message,
    tests/system/test_email_crash.py's (reliability-security.md §6.1 F13).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pika
import pytest
import redis
from aiosmtpd.controller import Controller

from offload.status import StatusStore
from tests.chaos.harness import SCALE, Submitter, assert_common, drain
from tests.chaos.ledger import Ledger, report
from tests.helpers import free_port, wait_for
from tests.support import AMQP_URL, REDIS_URL
from tests.support.email import Sink
from tests.system.stack import Api, Worker


def _email(n: int) -> dict[str, object]:
    return {
        "type": "email.send",
        "payload": {"to": [{"email": f"user{n}@example.com"}], "template": "welcome", "vars": {"name": f"U{n}"}},
    }


@pytest.fixture
def smtp() -> Iterator[tuple[Sink, int]]:
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


def test_f13_replayed_submissions_and_republished_messages_send_each_email_once(
    env: dict[str, str], logs: Path, smtp: tuple[Sink, int]
) -> None:
    sink, port = smtp
    api = Api(env, logs)
    worker = Worker({**env, "OFFLOAD_SMTP_PORT": str(port)}, logs, domain="email", threads=4)
    ledger = Ledger()
    client = redis.Redis.from_url(REDIS_URL)
    publisher_store = StatusStore.from_url(REDIS_URL)
    submitter = Submitter(api, ledger)
    try:
        # (a) one key, five concurrent clients.
        key = f"f13-{uuid.uuid4().hex}"
        with ThreadPoolExecutor(5) as pool:
            answers = list(
                pool.map(
                    lambda _: api.request("POST", "/v1/jobs", _email(0), headers={"Idempotency-Key": key}), range(5)
                )
            )
        ids = {body["id"] for _, _, body in answers}
        assert len(ids) == 1 and all(status in (200, 202) for status, _, _ in answers), answers
        ledger.record(key, 202, ids.pop())
        # (b) the same key, another body.
        status, _, body = api.request("POST", "/v1/jobs", _email(1), headers={"Idempotency-Key": key})
        assert status == 409 and body["error"] == "idempotency_key_reused", body
        # (c) a run of emails, then every one of their messages published again.
        count = 30 * SCALE
        for n in range(1, count + 1):
            submitter.submit(_email(n))
        verdict = drain(ledger, client, timeout=60 * SCALE)
        assert verdict.terminal == {"succeeded": count + 1}, verdict.terminal
        parameters = pika.URLParameters(AMQP_URL)
        connection = pika.BlockingConnection(parameters)
        try:
            channel = connection.channel()
            # republished as Offload's own user would (a message of any other user is never run by its record)
            properties = pika.BasicProperties(delivery_mode=2, user_id=parameters.credentials.username)
            for job_id in ledger.accepted:
                message = publisher_store.queries.stored_message(job_id)
                assert message is not None
                channel.basic_publish("", "email", message, properties)
        finally:
            connection.close()
        wait_for(lambda: worker.log.read_text().count("Skipping a duplicate delivery") >= count + 1, timeout=30)
        verdict = drain(ledger, client, timeout=30)
        message_ids = Counter(str(m["Message-ID"]) for m in sink.messages)
        doubles = sum(n - 1 for n in message_ids.values() if n > 1)
        attempts = [int(client.hget(f"offload:job:{j}", "attempts") or 0) for j in ledger.accepted]
        report(
            "F13",
            verdict,
            double_effects=doubles,
            recovery_s=None,
            faults=count + 1 + 5,
            replays=5,
            republished=count + 1,
            emails=len(sink.messages),
        )
        assert_common(verdict)
        assert doubles == 0 and len(message_ids) == count + 1
        assert set(attempts) == {1}  # a skipped delivery is not an attempt
    finally:
        api.stop()
        worker.stop()
