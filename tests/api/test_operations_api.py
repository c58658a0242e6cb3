"""Operations through the API (issue 22): dead letters listed with their reasons, requeued by filter
and purged with a typed confirmation; a bulk retry of 1,000 failed jobs followed to its end, each
job run again once. Real RabbitMQ and Redis, and a real Dramatiq worker making the failures and
running the retries."""

from __future__ import annotations

import time

import pytest
from flask.testing import FlaskClient

from offload.publish import Publisher
from offload.settings import Settings
from offload.status import JobState
from offload_api import bulk
from tests.admin.test_dead_letters_page import MALFORMED, _signed_in, _token, publish_raw_dead_letter
from tests.helpers import wait_for
from tests.support import Api, RunningWorker, queue_depth

#: Fails for good on its first attempt, succeeds on its second (once retried).
FAILING: dict[str, object] = {"type": "system.fail", "payload": {"permanent": True, "succeed_on_attempt": 2}}
#: Fails with a transient error and no retries left.
TRANSIENT: dict[str, object] = {
    "type": "system.fail",
    "payload": {"message": "Disk full."},
    "options": {"max_retries": 0},
}


def _fail_all(settings: Settings, publisher: Publisher, jobs: list[dict[str, object]], *, tenant: str) -> list[str]:
    """Submit ``jobs`` and run a worker until every one has failed (each leaves a dead letter)."""
    ids = [
        submitted.job_id
        for start in range(0, len(jobs), 500)
        for submitted in publisher.submit_batch(jobs[start : start + 500], tenant=tenant).jobs
    ]
    running = RunningWorker(settings, publisher, threads=8)
    try:
        wait_for(
            lambda: queue_depth("system.XQ") >= len(ids),
            timeout=60,
            interval=0.2,
            message=lambda: f"{queue_depth('system.XQ')} of {len(ids)} dead-lettered",
        )
    finally:
        running.stop()
    return ids


def test_dead_letters_are_listed_requeued_by_filter_and_purged_over_the_api(
    client: FlaskClient, settings: Settings, publisher: Publisher
) -> None:
    api, admin = Api(client), Api(client, "admin")
    permanent = _fail_all(settings, publisher, [FAILING] * 3, tenant="acme")
    transient = _fail_all(settings, publisher, [TRANSIENT] * 2, tenant="acme")
    publish_raw_dead_letter(MALFORMED)

    # Listed per queue, and a queue's letters with the reason Offload recorded
    assert api.get("/v1/dead-letters").status_code == 403  # admins only
    queues = admin.get("/v1/dead-letters").get_json()["queues"]
    assert {"queue": "system", "dead": 6} in queues
    page = admin.get("/v1/dead-letters/system").get_json()
    assert page["depth"] == 6 and page["pages"] == 1 and len(page["letters"]) == 6
    reasons: dict[str | None, str] = {letter["job_id"]: letter["reason"]["code"] for letter in page["letters"]}
    expected: dict[str | None, str] = {**dict.fromkeys(permanent, "permanent_error")}
    expected.update(dict.fromkeys(transient, "transient_error"))
    assert reasons == {**expected, None: "malformed"}
    groups = {g["code"]: g["count"] for g in page["groups"]}
    assert groups == {"permanent_error": 3, "transient_error": 2, "malformed": 1}
    assert admin.get("/v1/dead-letters/nosuch").status_code == 404

    # Requeued by filter: what matches nothing takes nothing; bad criteria are a 422 naming the field
    assert admin.post("/v1/dead-letters/system/requeue", json={"type": "system.noop"}).get_json()["matched"] == 0
    past = {"dead_to": "2000-01-01T00:00:00Z"}
    assert admin.post("/v1/dead-letters/system/requeue", json=past).get_json()["matched"] == 0
    bad = admin.post("/v1/dead-letters/system/requeue", json={"dead_from": "yesterday", "colour": "red"})
    assert bad.status_code == 422 and {e["field"] for e in bad.get_json()["errors"]} == {"dead_from", "colour"}
    recent = {"reason": "permanent_error", "dead_from": "2020-01-01T00:00:00+00:00"}
    requeued = admin.post("/v1/dead-letters/system/requeue", json=recent)
    assert requeued.status_code == 200 and requeued.get_json() == {"matched": 3, "requeued": 3, "malformed": 0}
    assert queue_depth("system.XQ") == 3
    assert {publisher.get(job_id).state for job_id in permanent} == {JobState.QUEUED}  # retried: queued again
    assert queue_depth("system") == 3

    # The admin page requeues by reason through the same code
    browser = _signed_in(client.application)
    listed = browser.get("/admin/dead-letters?queue=system").text
    assert listed.count('class="requeue-reason"') == 1  # transient_error's; never the malformed ones
    form = {"csrf_token": _token(listed), "reason": "transient_error"}
    flashed = browser.post("/admin/dead-letters/system/requeue", data=form, follow_redirects=True).text
    assert "Requeued 2 dead letter(s) of system with reason transient_error." in flashed
    assert {publisher.get(job_id).state for job_id in transient} == {JobState.QUEUED}

    # Purged, once the queue's name is repeated
    wrong = admin.post("/v1/dead-letters/system/purge", json={"confirm": "email"})
    assert wrong.status_code == 422 and wrong.get_json()["errors"][0]["field"] == "confirm"
    assert admin.post("/v1/dead-letters/system/purge", json={}).status_code == 422
    assert queue_depth("system.XQ") == 1
    purged = admin.post("/v1/dead-letters/system/purge", json={"confirm": "system"})
    assert purged.status_code == 200 and purged.get_json() == {"purged": 1}
    assert queue_depth("system.XQ") == 0


def test_a_bulk_retry_of_1000_failed_jobs_reports_progress_and_runs_each_once_more(
    client: FlaskClient, settings: Settings, publisher: Publisher
) -> None:
    api = Api(client)
    ids = _fail_all(settings, publisher, [FAILING] * 1000, tenant="acme")
    assert {publisher.get(job_id).error_code for job_id in ids} == {"permanent_error"}

    # Another tenant's jobs are out of reach; the filter is checked
    assert api.post("/v1/operations", json={"action": "retry", "filter": {"tenant": "globex"}}).status_code == 403
    bad = api.post("/v1/operations", json={"action": "explode", "filter": {"state": "sad"}})
    assert bad.status_code == 422 and {e["field"] for e in bad.get_json()["errors"]} == {"action", "filter.state"}

    body = {"action": "retry", "filter": {"type": "system.fail", "error_code": "permanent_error"}}
    started = api.post("/v1/operations", json=body)
    assert started.status_code == 202, started.get_json()
    operation = started.get_json()
    assert operation["matched"] == 1000 and operation["state"] in ("running", "succeeded")
    assert Api(client, "globex").get(f"/v1/operations/{operation['id']}").status_code == 404

    seen: list[dict[str, object]] = []

    def ended() -> bool:
        seen.append(api.get(f"/v1/operations/{operation['id']}").get_json())
        return seen[-1]["state"] != "running"

    wait_for(ended, timeout=60, interval=0.1, message=lambda: f"the operation did not end: {seen[-1]}")
    final = seen[-1]
    assert final["state"] == "succeeded" and final["finished_at"] is not None
    assert (final["matched"], final["done"], final["skipped"], final["failed"]) == (1000, 1000, 0, 0)
    done = [int(progress["done"]) for progress in seen]  # type: ignore[call-overload]
    assert done == sorted(done)  # progress only moves forward

    # Each job runs once more, and succeeds on that attempt
    running = RunningWorker(settings, publisher, threads=8)
    try:

        def all_succeeded() -> bool:
            return all(publisher.get(job_id).state is JobState.SUCCEEDED for job_id in ids)

        wait_for(all_succeeded, timeout=60, interval=0.5, message="the retried jobs did not all succeed")
    finally:
        running.stop()
    assert {publisher.get(job_id).attempts for job_id in ids} == {2}
    # and leaves the error index its failure wrote (the retry's own script took it out)
    assert api.get("/v1/jobs?error_code=permanent_error").get_json()["jobs"] == []
    store = publisher.store
    assert store.client.zcard(store.keys.error_index("_all", "permanent_error")) == 0

    # Idempotent per job: the same operation again finds nothing to retry
    again = api.post("/v1/operations", json=body).get_json()
    assert again["matched"] == 0


def test_an_operation_over_the_limit_is_refused_and_one_left_without_a_runner_is_resumed(
    client: FlaskClient, settings: Settings, publisher: Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = Api(client)
    ids = [publisher.publish("system.noop", {}, tenant="acme").job_id for _ in range(5)]
    monkeypatch.setattr(bulk, "MAX_JOBS", 4)
    refused = api.post("/v1/operations", json={"action": "cancel", "filter": {"type": "system.noop"}})
    assert refused.status_code == 422 and refused.get_json()["error"] == "too_many_jobs"
    monkeypatch.setattr(bulk, "MAX_JOBS", 5)

    # The runner's process "died" before starting: its lease is held, nothing is done
    monkeypatch.setattr(bulk, "LEASE_MS", 300)
    monkeypatch.setattr(bulk, "_run", lambda found, operation_id: None)
    operation = api.post("/v1/operations", json={"action": "cancel", "filter": {"type": "system.noop"}}).get_json()
    monkeypatch.undo()
    time.sleep(0.5)  # the lease lapses
    assert {publisher.get(job_id).state for job_id in ids} == {JobState.QUEUED}

    # The next read resumes it (any API process would)
    def ended() -> bool:
        return api.get(f"/v1/operations/{operation['id']}").get_json()["state"] == "succeeded"

    wait_for(ended, timeout=20, interval=0.1)
    assert api.get(f"/v1/operations/{operation['id']}").get_json()["done"] == 5
    assert {publisher.get(job_id).state for job_id in ids} == {JobState.CANCELLED}


def test_jobs_are_found_by_error_code_and_time_ranges_and_queues_show_depths_and_jobs(
    client: FlaskClient, settings: Settings, publisher: Publisher
) -> None:
    api, admin = Api(client), Api(client, "admin")
    before = time.time()
    permanent = _fail_all(settings, publisher, [FAILING] * 2, tenant="acme")
    transient = _fail_all(settings, publisher, [TRANSIENT], tenant="acme")
    theirs = _fail_all(settings, publisher, [FAILING], tenant="globex")
    queued = publisher.publish("system.noop", {}, tenant="acme").job_id

    def found(query: str, who: Api = api) -> set[str]:
        response = who.get(f"/v1/jobs?{query}")
        assert response.status_code == 200, response.get_json()
        return {job["id"] for job in response.get_json()["jobs"]}

    assert found("error_code=permanent_error") == set(permanent)  # not globex's
    assert found("error_code=permanent_error", admin) == {*permanent, *theirs}
    assert found("error_code=transient_error") == set(transient)
    assert found("error_code=permanent_error&state=succeeded") == set()
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(before - 1))
    assert found(f"finished_from={since}") == {*permanent, *transient}
    assert found(f"finished_to={since}") == set()
    assert found(f"created_from={since}") == {*permanent, *transient, queued}
    assert found(f"created_to={since}&state=queued") == set()
    bad = api.get("/v1/jobs?finished_from=yesterday")
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["field"] == "finished_from"
    naive = api.get("/v1/jobs?created_to=2026-01-01T00:00:00")
    assert naive.status_code == 422 and naive.get_json()["errors"][0]["field"] == "created_to"

    # The admin page's job list takes the same filters
    page = _signed_in(client.application).get("/admin/jobs?error_code=transient_error").text
    assert transient[0][:8] in page and permanent[0][:8] not in page

    # /v1/queues: each queue's depths, consumers and jobs by state
    assert api.get("/v1/queues").status_code == 403
    system = next(q for q in admin.get("/v1/queues").get_json()["queues"] if q["name"] == "system")
    assert system["dead"] == 4 and system["ready"] == 1 and system["consumers"] == 0 and system["unacked"] is None
    assert system["jobs"]["failed"] == 4 and system["jobs"]["queued"] == 1


def test_a_bulk_delete_removes_ended_jobs_only_and_a_tenant_reaches_only_its_own(
    client: FlaskClient, publisher: Publisher
) -> None:
    api = Api(client)
    ours = [publisher.publish("system.noop", {}, tenant="acme").job_id for _ in range(3)]
    theirs = publisher.publish("system.noop", {}, tenant="globex").job_id
    for job_id in [*ours[:2], theirs]:
        publisher.store.lifecycle.cancel(job_id, tenant=None)

    body = {"action": "delete", "filter": {"type": "system.noop"}}
    operation = api.post("/v1/operations", json=body).get_json()
    wait_for(lambda: api.get(f"/v1/operations/{operation['id']}").get_json()["state"] == "succeeded", timeout=20)
    final = api.get(f"/v1/operations/{operation['id']}").get_json()
    assert (final["matched"], final["done"], final["skipped"], final["tenant"]) == (3, 2, 1, "acme")
    assert [publisher.get(job_id) for job_id in ours[:2]] == [None, None]
    assert publisher.get(ours[2]) is not None and publisher.get(theirs) is not None  # waiting; another tenant's
    assert {job["id"] for job in api.get("/v1/jobs").get_json()["jobs"]} == {ours[2]}
    assert api.get(f"/v1/jobs/{ours[0]}").status_code == 404


def test_a_bulk_cancel_by_tag_reaches_the_tagged_jobs_only(client: FlaskClient, publisher: Publisher) -> None:
    api = Api(client)
    tagged = [
        api.post("/v1/jobs", json={"type": "system.noop", "options": {"tags": ["campaign:7"], "delay": 600}})
        for _ in range(3)
    ]
    assert all(response.status_code == 202 for response in tagged)
    other = api.post("/v1/jobs", json={"type": "system.noop", "options": {"tags": ["campaign:8"], "delay": 600}})
    body = {"action": "cancel", "filter": {"tag": "campaign:7"}}
    operation = api.post("/v1/operations", json=body).get_json()
    wait_for(lambda: api.get(f"/v1/operations/{operation['id']}").get_json()["state"] == "succeeded", timeout=20)
    final = api.get(f"/v1/operations/{operation['id']}").get_json()
    assert (final["matched"], final["done"]) == (3, 3)
    for response in tagged:
        assert publisher.get(response.get_json()["id"]).state is JobState.CANCELLED
    assert publisher.get(other.get_json()["id"]).state is JobState.SCHEDULED
    refused = api.post("/v1/operations", json={"action": "cancel", "filter": {"tag": "no spaces"}})
    assert refused.status_code == 422 and "tag" in str(refused.get_json()["errors"])


def test_the_admin_job_list_starts_a_bulk_operation_on_its_filter_and_shows_its_progress(
    client: FlaskClient, publisher: Publisher
) -> None:
    waiting = [publisher.publish("system.noop", {}, tenant=tenant).job_id for tenant in ("acme", "globex")]
    other = publisher.publish("system.sleep", {"ms": 1}, tenant="acme").job_id
    browser = _signed_in(client.application)
    listed = browser.get("/admin/jobs?type=system.noop&state=queued").text
    assert 'id="bulk"' in listed and 'name="type" value="system.noop"' in listed
    form = {"csrf_token": _token(listed), "action": "cancel", "type": "system.noop", "state": "queued"}
    started = browser.post("/admin/operations", data=form)
    assert started.status_code == 302 and "/admin/operations/" in started.headers["Location"]

    def shown() -> str:
        return str(browser.get(started.headers["Location"]).text)

    wait_for(lambda: 'id="operation-state">succeeded<' in shown(), timeout=20)
    assert 'id="operation-done">2<' in shown() and "every tenant" in shown()
    assert {publisher.get(job_id).state for job_id in waiting} == {JobState.CANCELLED}
    assert publisher.get(other).state is JobState.QUEUED
    assert browser.post("/admin/operations", data={**form, "action": "explode"}).status_code == 400
    assert browser.get("/admin/operations/nosuch").status_code == 404
