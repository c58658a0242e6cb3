"""Reading, listing, cancelling and retrying jobs, and batches, over HTTP."""

from __future__ import annotations

import pytest

from tests.support import Api


def test_list_filters_by_state_and_type_and_pages(api: Api) -> None:
    noop = [api.submit().get_json()["id"] for _ in range(5)]
    sleeper = api.submit("system.sleep", {"ms": 1}).get_json()["id"]
    scheduled = api.submit(delay=600).get_json()["id"]
    assert [j["id"] for j in api.get("/v1/jobs?state=scheduled").get_json()["jobs"]] == [scheduled]
    assert [j["id"] for j in api.get("/v1/jobs?type=system.sleep").get_json()["jobs"]] == [sleeper]
    first = api.get("/v1/jobs?limit=4").get_json()
    second = api.get(f"/v1/jobs?limit=4&cursor={first['next_cursor']}").get_json()
    assert second["next_cursor"] is None
    listed = [j["id"] for j in first["jobs"] + second["jobs"]]
    assert sorted(listed) == sorted([*noop, sleeper, scheduled])


@pytest.mark.parametrize("query", ["state=bogus", "limit=0", "limit=201", "limit=x", "cursor=@@@"])
def test_bad_list_filters_are_422(api: Api, query) -> None:
    response = api.get(f"/v1/jobs?{query}")
    assert response.status_code == 422, response.get_json()


def test_cancelling_a_queued_job_cancels_it_and_a_second_cancel_is_409(api: Api) -> None:
    job_id = api.submit(delay=300).get_json()["id"]
    response = api.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200 and response.get_json()["state"] == "cancelled"
    again = api.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and again.get_json()["error"] == "invalid_state"


def test_retry_is_only_for_failed_dead_or_cancelled_jobs(api: Api) -> None:
    job_id = api.submit().get_json()["id"]
    response = api.post(f"/v1/jobs/{job_id}/retry")
    assert response.status_code == 409 and "queued" in response.get_json()["detail"]
    api.post(f"/v1/jobs/{job_id}/cancel")
    retried = api.post(f"/v1/jobs/{job_id}/retry")
    assert retried.status_code == 202 and retried.get_json()["state"] == "queued"
    history = [h["state"] for h in api.get(f"/v1/jobs/{job_id}").get_json()["history"]]
    assert history == ["queued", "cancelled", "queued"]


def test_a_batch_is_validated_all_or_nothing(api: Api) -> None:
    response = api.post(
        "/v1/batches", json={"jobs": [{"type": "system.noop"}, {"type": "system.sleep", "payload": {}}]}
    )
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] == "jobs[1].payload.ms"
    assert api.get("/v1/jobs").get_json()["jobs"] == []


@pytest.mark.parametrize(
    "body", [{}, {"jobs": []}, {"jobs": "x"}, {"jobs": [{}] * 501}, {"jobs": [{"type": "system.noop"}], "x": 1}]
)
def test_malformed_batches_are_422(api: Api, body) -> None:
    assert api.post("/v1/batches", json=body).status_code == 422


def test_a_batch_reports_the_aggregate_of_its_jobs(api: Api) -> None:
    response = api.post(
        "/v1/batches", json={"jobs": [{"type": "system.noop"}, {"type": "system.noop", "options": {"delay": 60}}]}
    )
    assert response.status_code == 202
    batch = response.get_json()
    assert [j["state"] for j in batch["jobs"]] == ["queued", "scheduled"]
    api.post(f"/v1/jobs/{batch['jobs'][1]['id']}/cancel")
    status = api.get(f"/v1/batches/{batch['id']}").get_json()
    assert status["total"] == 2 and status["finished"] == 1 and status["counts"]["cancelled"] == 1
    assert status["progress"] == 50 and status["done"] is False
    assert api.as_("globex").get(f"/v1/batches/{batch['id']}").status_code == 404
    job = api.get(f"/v1/jobs/{batch['jobs'][0]['id']}").get_json()
    assert job["batch_id"] == batch["id"]
