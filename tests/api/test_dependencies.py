"""Redis or RabbitMQ unavailable: 503 with Retry-After, fast, and nothing half-written."""

from __future__ import annotations

import time

import pika
import pytest
import redis

from offload.publish import Publisher
from offload_api.app import create_app
from tests.helpers import free_port
from tests.support import AMQP_URL, REDIS_URL, Api, make_settings


@pytest.fixture
def closed_port() -> int:
    return free_port()


def _queue_depth(queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        if connection.is_open:
            connection.close()


def test_with_redis_down_submissions_are_503_and_nothing_is_published(servers, clean_broker, closed_port) -> None:
    settings = make_settings(redis_url=f"redis://127.0.0.1:{closed_port}/0")
    publisher = Publisher.from_settings(settings)
    try:
        api = Api(create_app(settings, publisher=publisher).test_client())
        started = time.monotonic()
        response = api.submit("system.noop")
        assert time.monotonic() - started < 1.5
        assert response.status_code == 503 and response.get_json()["error"] == "status_store_unavailable"
        assert response.headers["Retry-After"] and response.get_json()["retry_after"] > 0
        assert api.get("/v1/jobs/6a2e3a38-3f1e-4a3c-9f0e-3b8f3c1d2e4f").status_code == 503  # never a 404
        assert _queue_depth("system") == 0
        ready = api.client.get("/readyz")
        assert ready.status_code == 503 and ready.get_json()["checks"]["redis"] == "unavailable"
    finally:
        publisher.close()


def test_with_the_broker_down_submissions_are_503_and_no_record_is_left(redis_client, closed_port) -> None:
    settings = make_settings(broker_url=f"amqp://guest:guest@127.0.0.1:{closed_port}/%2F")
    publisher = Publisher.from_settings(settings)
    try:
        api = Api(create_app(settings, publisher=publisher).test_client())
        for _ in range(3):
            started = time.monotonic()
            response = api.submit("system.noop")
            assert time.monotonic() - started < 2.0
            assert response.status_code == 503 and response.get_json()["error"] == "broker_unavailable"
        assert redis.Redis.from_url(REDIS_URL).keys("offload:job:*") == []
        with_key = api.post("/v1/jobs", json={"type": "system.noop"}, headers={"Idempotency-Key": "k"})
        assert with_key.status_code == 503
        assert redis_client.get("offload:idem:acme:k") is None  # the client can retry with the same key
        assert api.client.get("/readyz").get_json()["checks"]["broker"] == "unavailable"
    finally:
        publisher.close()


def test_a_delayed_job_is_accepted_while_the_broker_is_down(redis_client, closed_port) -> None:
    settings = make_settings(broker_url=f"amqp://guest:guest@127.0.0.1:{closed_port}/%2F")
    publisher = Publisher.from_settings(settings)
    try:
        api = Api(create_app(settings, publisher=publisher).test_client())
        response = api.submit("system.noop", delay=60)
        assert response.status_code == 202 and response.get_json()["state"] == "scheduled"
    finally:
        publisher.close()
