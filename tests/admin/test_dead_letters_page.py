"""The dead-letters page (issue 27): every letter renders, malformed ones too, page by page, with
the reason Offload recorded grouped by code; requeue all leaves the malformed ones, which are
purged one by one. Real RabbitMQ and Redis; the letters are made by a real worker refusing and
failing jobs, and malformed bytes are published straight to ``system.XQ`` with pika."""

from __future__ import annotations

import re

import pika
import pytest
from flask import Flask
from flask.testing import FlaskClient

from offload.dead_letters import digest
from offload.publish import Publisher
from offload.settings import Settings
from tests.helpers import wait_for
from tests.support import AMQP_URL, KEYS, RunningWorker, queue_depth
from tests.support.wire import BrokerUser, publish_as, wire_message

#: What a stray service might publish to a dead-letter queue: not UTF-8, not JSON, markup, long.
MALFORMED = b"\xff\xfe<script>alert(1)</script> not json " + b"x" * 400


@pytest.fixture
def settings(wire_settings: Settings) -> Settings:
    """Wire messages come from a mapped publisher (``orders``)."""
    return wire_settings


def publish_raw_dead_letter(body: bytes, queue: str = "system") -> None:
    """Publish ``body`` straight to ``<queue>.XQ`` with plain pika, as any AMQP client can."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish("", f"{queue}.XQ", body, pika.BasicProperties(delivery_mode=2))
    finally:
        connection.close()


def _token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None, page[:500]
    return found.group(1)


def _signed_in(app: Flask) -> FlaskClient:
    client = app.test_client()
    token = _token(client.get("/admin/login").text)
    assert client.post("/admin/login", data={"key": KEYS["admin"], "csrf_token": token}).status_code == 302
    return client


def _grouped(page: str) -> dict[str, int]:
    """The reasons table: code -> count."""
    rows = re.findall(r'<tr class="reason-([^"]+)"><td><code>[^<]*</code></td><td class="count">(\d+)</td>', page)
    return {code: int(count) for code, count in rows}


def _positions(page: str) -> list[int]:
    return [int(p) for p in re.findall(r'<tr id="letter-(\d+)"', page)]


def _job_links(page: str) -> set[str]:
    return set(re.findall(r'href="/admin/jobs/([0-9a-f-]{36})"', page))


def _dead_letters(settings: Settings, publisher: Publisher, make: int) -> None:
    """Run a worker until ``make`` letters are in ``system.XQ``, then stop it (nothing consumes a requeue)."""
    running = RunningWorker(settings, publisher)
    try:
        wait_for(lambda: queue_depth("system.XQ") == make, timeout=30, message=lambda: f"{queue_depth('system.XQ')}")
    finally:
        running.stop()


def test_a_malformed_dead_letter_renders_beside_the_recorded_reasons_and_holds_no_other_back(
    orders: BrokerUser, app: Flask, settings: Settings, publisher: Publisher
) -> None:
    # Given dead letters of every kind Offload records a reason for, and one malformed letter
    broken = publisher.publish("system.fail", {"permanent": True}, tenant="acme").job_id
    exhausted = publisher.publish("system.fail", {"message": "Disk full."}, tenant="acme", max_retries=1).job_id
    invalid = wire_message("system.sleep", "system", {"ms": "soon"})
    noted = wire_message("system.noop", "system", {}, job_id="order-42")
    unknown = wire_message("system.nonesuch", "system", {})
    wrong = wire_message("image.resize", "system", {})
    for message in (invalid, noted, unknown, wrong):
        publish_as(orders, "system", message)
    _dead_letters(settings, publisher, make=6)
    publish_raw_dead_letter(MALFORMED)
    client = _signed_in(app)

    # When the queue's dead letters are shown
    response = client.get("/admin/dead-letters?queue=system")

    # Then every letter renders, the malformed one as its escaped, truncated first bytes
    assert response.status_code == 200
    page = response.text
    assert _positions(page) == [1, 2, 3, 4, 5, 6, 7]
    assert "\\xff\\xfe&lt;script&gt;alert(1)&lt;/script&gt; not json xxx" in page
    assert "<script>alert(1)" not in page and "x" * 300 not in page and "…" in page
    # with the reason Offload recorded, never RabbitMQ's "rejected"
    assert "rejected" not in page
    assert "<code>permanent_error</code> Failing on purpose. (after 1 attempt)" in page
    assert "<code>transient_error</code> TransientJobError: Disk full. (the last of 2 attempts)" in page
    assert "<code>validation_failed</code>" in page and "<li>payload.ms: " in page
    assert "<code>invalid_job_id</code> kwargs.job_id must be a UUID" in page and "order-42" in page
    assert "<code>unknown_type</code> No job type is named &#39;system.nonesuch&#39;." in page
    assert "<code>wrong_queue</code> &#39;image.resize&#39; jobs go to queue &#39;media&#39;" in page
    assert "<code>malformed</code> 437 bytes, not JSON: it cannot be requeued, only purged." in page
    # each job a record names is linked; the id no record could be written for is not
    assert _job_links(page) == {broken, exhausted, invalid["message_id"], unknown["message_id"], wrong["message_id"]}
    assert _grouped(page) == {
        "transient_error": 1,
        "invalid_job_id": 1,
        "malformed": 1,
        "permanent_error": 1,
        "unknown_type": 1,
        "validation_failed": 1,
        "wrong_queue": 1,
    }

    # When all are requeued: the six valid ones go back to their queue, the malformed one stays
    requeued = client.post(
        "/admin/dead-letters/system/requeue", data={"csrf_token": _token(page)}, follow_redirects=True
    )
    assert requeued.status_code == 200
    assert "Requeued 6 dead letter(s) of system. Skipped 1 malformed one(s), left in place" in requeued.text
    assert queue_depth("system.XQ") == 1 and queue_depth("system") == 6
    assert _positions(requeued.text) == [1] and _grouped(requeued.text) == {"malformed": 1}
    assert publisher.get(broken).state.value == "queued"  # requeued as a retry of its job

    # And the malformed one is purged on its own, by its digest, behind the CSRF token
    form = {"digest": digest(MALFORMED), "page": "1"}
    assert client.post("/admin/dead-letters/system/drop", data={**form, "csrf_token": "forged"}).status_code == 403
    assert (
        client.post("/admin/dead-letters/system/drop", data={"digest": "nope", "csrf_token": _token(page)}).status_code
        == 400
    )
    dropped = client.post(
        "/admin/dead-letters/system/drop", data={**form, "csrf_token": _token(page)}, follow_redirects=True
    )
    assert "Purged that dead letter." in dropped.text and "No dead letters." in dropped.text
    assert queue_depth("system.XQ") == 0
    again = client.post(
        "/admin/dead-letters/system/drop", data={**form, "csrf_token": _token(page)}, follow_redirects=True
    )
    assert "That dead letter is no longer there." in again.text


def test_55_dead_letters_are_all_reachable_page_by_page_with_identical_failures_counted_together(
    app: Flask, settings: Settings, publisher: Publisher
) -> None:
    # Given 54 jobs that failed the same way, then a malformed letter: 55 dead letters
    failed = {publisher.publish("system.fail", {"permanent": True}, tenant="acme").job_id for _ in range(54)}
    _dead_letters(settings, publisher, make=54)
    publish_raw_dead_letter(b"\x00\x01 binary")
    client = _signed_in(app)

    # When the first page and the next are shown
    first = client.get("/admin/dead-letters?queue=system").text
    second = client.get("/admin/dead-letters?queue=system&page=2").text

    # Then the first has 50, the second the other 5, and between them every job and the malformed one
    assert _positions(first) == list(range(1, 51)) and _positions(second) == list(range(51, 56))
    assert "Page 1 of 2" in first and 'href="/admin/dead-letters?queue=system&amp;page=2">Older' in first
    assert "Page 2 of 2" in second and "Older" not in second and "Newer" in second
    assert _job_links(first) | _job_links(second) == failed and not _job_links(first) & _job_links(second)
    assert '<tr id="letter-55" class="malformed">' in second and "\\x00\\x01 binary" in second
    # and the reasons of the whole queue are counted on every page
    assert _grouped(first) == _grouped(second) == {"permanent_error": 54, "malformed": 1}
    assert "of all 55" in first
    # A page past the end shows the last; a page that is not a number, the first
    assert _positions(client.get("/admin/dead-letters?queue=system&page=9").text) == list(range(51, 56))
    assert _positions(client.get("/admin/dead-letters?queue=system&page=x").text) == list(range(1, 51))
