"""The worker runtime against real RabbitMQ and Redis: attempts, retries, failures, cancel, follow-ups."""

from __future__ import annotations

import json
import time
import uuid

import dramatiq
import pika

from offload.errors import BrokerUnavailable
from offload.publish import Publisher
from offload.status import JobState
from tests.helpers import wait_for
from tests.support import AMQP_URL, RunningWorker


def _xq_depth(queue: str = "system") -> int:
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        return connection.channel().queue_declare(f"{queue}.XQ", passive=True).method.message_count
    finally:
        connection.close()


def test_a_job_runs_to_succeeded_with_its_result(publisher: Publisher, worker: RunningWorker, wait_state) -> None:
    job = publisher.publish("system.noop", {"echo": "hi"}, tenant="acme")
    record = wait_state(job.job_id, "succeeded")
    assert record.result == {"echo": "hi"} and record.attempts == 1 and record.progress == 100
    assert record.started_at and record.finished_at and record.finished_at >= record.started_at
    assert [h["state"] for h in publisher.store.queries.history(job.job_id)] == ["queued", "running", "succeeded"]


def test_the_sdk_can_wait_for_a_job_to_end(publisher: Publisher, worker: RunningWorker) -> None:
    job = publisher.publish("system.sleep", {"ms": 300}, tenant="acme")
    started = time.monotonic()
    record = publisher.wait(job.job_id, timeout=10)
    assert record is not None and record.state is JobState.SUCCEEDED and time.monotonic() - started < 5
    slow = publisher.publish("system.sleep", {"ms": 5000}, tenant="acme")
    assert publisher.wait(slow.job_id, timeout=0.3).state in {JobState.QUEUED, JobState.RUNNING}
    assert publisher.wait(str(uuid.uuid4()), timeout=0.1) is None


def test_the_sdk_can_watch_a_job_change_until_it_ends(publisher: Publisher, worker: RunningWorker) -> None:
    job = publisher.publish("system.sleep", {"ms": 600, "steps": 3}, tenant="acme")
    seen = list(publisher.watch(job.job_id, timeout=10))
    states = [record.state.value for record in seen]
    assert states[0] in {"queued", "running"} and states[-1] == "succeeded" and "running" in states
    assert any(0 < record.progress < 100 for record in seen)  # progress is a change too
    assert [r.seq for r in seen] == sorted({r.seq for r in seen})  # each record is a new change, in order
    assert list(publisher.watch(job.job_id, timeout=1)) == [seen[-1]]  # an ended job: its record, once
    assert list(publisher.watch(job.job_id, tenant="other")) == []  # another tenant's job is not there
    assert list(publisher.watch(str(uuid.uuid4()), timeout=0.1)) == []
    slow = publisher.publish("system.sleep", {"ms": 5000}, tenant="acme")
    started = time.monotonic()
    assert not list(publisher.watch(slow.job_id, timeout=0.3))[-1].state.terminal
    assert time.monotonic() - started < 2


def test_progress_is_reported_while_sleeping(publisher: Publisher, worker: RunningWorker, wait_state) -> None:
    job = publisher.publish("system.sleep", {"ms": 800, "steps": 4}, tenant="acme")
    wait_for(lambda: (publisher.get(job.job_id).progress or 0) >= 25, timeout=5)
    assert publisher.get(job.job_id).state is JobState.RUNNING
    assert wait_state(job.job_id, "succeeded").result == {"slept_ms": 800}


def test_a_transient_failure_is_retried_with_backoff_then_succeeds(
    publisher: Publisher, worker: RunningWorker, wait_state
) -> None:
    job = publisher.publish("system.fail", {"succeed_on_attempt": 3}, tenant="acme")
    record = wait_state(job.job_id, "succeeded", timeout=15)
    # The record shows the last attempt's outcome, not an old error.
    assert record.attempts == 3 and record.error_code is None and record.error_message is None
    states = [h["state"] for h in publisher.store.queries.history(job.job_id)]
    assert states == ["queued", "running", "retrying", "running", "retrying", "running", "succeeded"]
    retry = publisher.store.queries.history(job.job_id)[2]
    assert retry["error"]["code"] == "transient_error" and retry["retry_at"] >= retry["at"]


def test_retries_are_bounded_by_max_retries_then_the_job_fails_and_is_dead_lettered(
    publisher: Publisher, worker: RunningWorker, wait_state
) -> None:
    job = publisher.publish("system.fail", {"message": "Nope."}, tenant="acme", max_retries=1)
    record = wait_state(job.job_id, "failed", timeout=15)
    assert record.attempts == 2 and record.error_code == "transient_error"
    assert record.error_message == "TransientJobError: Nope."
    wait_for(lambda: _xq_depth() == 1, timeout=5)


def test_a_permanent_failure_is_not_retried(publisher: Publisher, worker: RunningWorker, wait_state) -> None:
    job = publisher.publish("system.fail", {"permanent": True, "message": "Bad input."}, tenant="acme")
    record = wait_state(job.job_id, "failed")
    assert record.attempts == 1 and (record.error_code, record.error_message) == ("permanent_error", "Bad input.")


def test_cancelling_a_running_job_stops_it(publisher: Publisher, worker: RunningWorker, wait_state) -> None:
    job = publisher.publish("system.sleep", {"ms": 20_000, "steps": 100}, tenant="acme")
    wait_state(job.job_id, "running")
    assert publisher.store.lifecycle.cancel(job.job_id, tenant="acme") == ("requested", None)
    started = time.monotonic()
    record = wait_state(job.job_id, "cancelled", timeout=5)
    assert time.monotonic() - started < 2 and record.progress < 100


def test_a_delayed_job_runs_after_its_delay(publisher: Publisher, worker: RunningWorker, wait_state) -> None:
    job = publisher.publish("system.noop", {}, tenant="acme", delay=1)
    assert publisher.get(job.job_id).state is JobState.SCHEDULED
    record = wait_state(job.job_id, "succeeded", timeout=6)
    assert record.started_at - record.created_at >= 1000


def test_follow_ups_run_after_their_parent_succeeds_and_can_read_its_result(
    publisher: Publisher, worker: RunningWorker, wait_state
) -> None:
    parent = publisher.publish(
        "system.noop", {"echo": "parent"}, tenant="acme", then=[{"type": "system.noop", "payload": {"echo": "child"}}]
    )
    wait_state(parent.job_id, "succeeded")
    children = [r for r in publisher.store.queries.list_jobs(tenant="acme").records if r.parent_id == parent.job_id]
    assert len(children) == 1
    child = wait_state(children[0].id, "succeeded")
    assert child.result == {"echo": "child"} and child.tenant == "acme"


def test_a_duplicate_delivery_of_a_finished_job_does_not_run_it_again(
    publisher: Publisher, worker: RunningWorker, wait_state
) -> None:
    job = publisher.publish("system.noop", {}, tenant="acme")
    wait_state(job.job_id, "succeeded")
    record_message = publisher.store.queries.stored_message(job.job_id)
    assert record_message is not None
    publisher.republish(record_message)
    time.sleep(0.5)
    record = publisher.get(job.job_id)
    assert record.attempts == 1 and record.state is JobState.SUCCEEDED


def test_a_message_of_offloads_own_user_without_a_record_is_refused_not_adopted(
    publisher: Publisher, worker: RunningWorker
) -> None:
    """Only a mapped publisher's message is adopted (tests/worker/test_wire_identity.py): one sent with
    Offload's own (trusted) user is a job Offload recorded, or nothing it runs (a stranger's message
    an admin requeued as it was, say)."""
    job_id = str(uuid.uuid4())
    body = {
        "queue_name": "system",
        "actor_name": "system.sleep",
        "args": [],
        "kwargs": {"job_id": job_id, "payload": {"ms": 10}},
        "options": {"broker_priority": 2, "offload": {"v": 1, "tenant": "globex"}},
        "message_id": job_id,
        "message_timestamp": int(time.time() * 1000),
    }
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    properties = pika.BasicProperties(delivery_mode=2, user_id="guest")  # the tests' OFFLOAD_BROKER_URL user
    connection.channel().basic_publish("", "system", json.dumps(body).encode(), properties)
    connection.close()
    wait_for(lambda: _xq_depth() == 1, timeout=10)
    [note] = publisher.store.janitor.dead_letter_notes([job_id])
    assert note is not None and note["code"] == "unauthenticated_publisher"
    assert publisher.get(job_id) is None


def test_a_withdrawn_job_whose_message_arrives_late_is_dropped(publisher: Publisher, worker: RunningWorker) -> None:
    prepared = publisher.preparer.prepare({"type": "system.noop"}, tenant="acme")
    message = publisher.sequence._record(prepared, None)
    assert isinstance(message, bytes)
    publisher.store.lifecycle.abort(prepared.job_id, tenant="acme")
    publisher.republish(message)
    time.sleep(0.5)
    assert publisher.get(prepared.job_id) is None


def test_a_job_whose_confirm_went_astray_after_a_worker_took_it_is_accepted(
    publisher: Publisher, worker: RunningWorker, wait_state
) -> None:
    real = publisher.sequence.transport

    class LostConfirm:
        """The broker takes the message, the worker starts it, and the confirm never arrives."""

        def publish(
            self,
            queue: str,
            body: bytes,
            *,
            priority: int | None = None,
            timeout: float | None = None,
            wait: float | None = None,
        ) -> None:
            real.publish(queue, body, priority=priority, timeout=timeout, wait=wait)
            job_id = json.loads(body)["message_id"]
            wait_for(lambda: (r := publisher.get(job_id)) is not None and r.state is not JobState.QUEUED, timeout=5)
            raise BrokerUnavailable("The message broker did not confirm the message in time.")

        def refuse_if_full(self, queue: str) -> None:
            real.refuse_if_full(queue)

    publisher.sequence.transport = LostConfirm()  # type: ignore[assignment]
    try:
        submitted = publisher.publish("system.noop", {"echo": "ran"}, tenant="acme")
    finally:
        publisher.sequence.transport = real
    assert wait_state(submitted.job_id, "succeeded").result == {"echo": "ran"}


def test_an_undecodable_message_is_dead_lettered_without_running(
    publisher: Publisher, worker: RunningWorker, wait_state
) -> None:
    wait_state(publisher.publish("system.noop", {}, tenant="acme").job_id, "succeeded")  # queues exist, worker consumes
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    channel = connection.channel()
    channel.basic_publish("", "system", b"\x80\x04not json", pika.BasicProperties(delivery_mode=2))
    connection.close()
    wait_for(lambda: _xq_depth() == 1, timeout=5)


def test_an_attempt_over_its_time_limit_is_interrupted_and_retried_then_fails_as_timed_out(
    settings, redis_client, clean_broker
) -> None:
    from offload.contracts import JobContract, Registry, RetryPolicy, system
    from offload.worker import JobContext

    class Forever(system.NoopPayload):
        pass

    stuck = JobContract(
        name="system.stuck",
        queue="system",
        payload=Forever,
        description="Never returns.",
        time_limit=0.5,
        retry=RetryPolicy(max_retries=1, min_backoff=0.1, max_backoff=0.2),
    )

    def never_returns(ctx: JobContext, payload: Forever) -> None:
        while True:
            time.sleep(0.01)

    registry = Registry([*system.CONTRACTS, stuck])
    publisher = Publisher.from_settings(settings, registry=registry)
    from offload.jobs import JobType, WorkerSpec

    broker = WorkerSpec(name="stuck", jobs=(JobType(stuck, never_returns),)).build(settings, publisher=publisher)
    broker.emit_after("process_boot")  # starts TimeLimit's watchdog, as the dramatiq CLI does
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        job = publisher.publish("system.stuck", {}, tenant="acme")

        def ended() -> bool:
            record = publisher.get(job.job_id)
            return record is not None and record.state is JobState.FAILED

        wait_for(ended, timeout=15, message=lambda: str(publisher.get(job.job_id)))
        record = publisher.get(job.job_id)
        assert record.attempts == 2 and record.error_code == "timed_out"
        assert "time limit of 0.5 s" in (record.error_message or "")
    finally:
        worker.stop(timeout=5000)
        broker.close()
        publisher.close()


def test_every_log_line_about_a_job_carries_its_id_and_tenant_dramatiqs_own_included(
    publisher: Publisher, worker: RunningWorker, wait_state
) -> None:
    import logging

    from offload.logs import job_context

    seen: list[tuple[str, dict[str, str] | None]] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), job_context.get()))

    recorder = Recorder(level=logging.INFO)
    logging.getLogger().addHandler(recorder)
    try:
        job = publisher.publish("system.fail", {"permanent": True, "message": "Nope."}, tenant="acme")
        wait_state(job.job_id, "failed")
        wait_for(lambda: any("Aborting message" in message for message, _ in seen), timeout=5)
    finally:
        logging.getLogger().removeHandler(recorder)
    about_job = [(message, fields) for message, fields in seen if job.job_id in message or "Job failed" in message]
    assert about_job and all(
        fields and fields["job_id"] == job.job_id and fields["tenant"] == "acme" for _, fields in about_job
    )
