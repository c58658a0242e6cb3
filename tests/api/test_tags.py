"""Tags and metadata on jobs (issue 22): validated at submission, kept on the record, listed by tag, trimmed."""

from __future__ import annotations

import time
from typing import Any

import pytest

from offload.publish import Publisher
from offload.status import JobState
from tests.support import Api


@pytest.mark.parametrize(
    ("options", "field", "rule"),
    [
        ({"tags": [f"t{i}" for i in range(11)]}, "options.tags", "too_long"),
        ({"tags": [""]}, "options.tags[0]", "string_too_short"),
        ({"tags": ["a" * 65]}, "options.tags[0]", "string_too_long"),
        ({"tags": ["ok", "no spaces"]}, "options.tags[1]", "string_pattern_mismatch"),
        ({"tags": ["ünïcode"]}, "options.tags[0]", "string_pattern_mismatch"),
        ({"tags": "solo"}, "options.tags", "list_type"),
        ({"tags": [7]}, "options.tags[0]", "string_type"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "options.metadata", "too_long"),
        ({"metadata": {"k" * 65: "v"}}, "options.metadata", "string_too_long"),
        ({"metadata": {"": "v"}}, "options.metadata", "string_too_short"),
        ({"metadata": {"order": "x" * 257}}, "options.metadata.order", "string_too_long"),
        ({"metadata": {"order": 42}}, "options.metadata.order", "string_type"),
        ({"metadata": ["order"]}, "options.metadata", "dict_type"),
    ],
)
def test_bad_tags_and_metadata_are_422s_naming_the_field(
    api: Api, options: dict[str, Any], field: str, rule: str
) -> None:
    response = api.submit("system.noop", **options)
    assert response.status_code == 422, response.get_json()
    body = response.get_json()
    assert body["error"] == "validation_failed"
    assert any(e["field"].startswith(field) and e["rule"] == rule for e in body["errors"]), body["errors"]


def test_tags_and_metadata_are_kept_shown_and_listed_per_tenant(api: Api) -> None:
    metadata = {"order": "A-1042", "customer": "ünïcode ok in values"}
    first = api.submit("system.noop", tags=["checkout", "eu/west:1", "checkout"], metadata=metadata).get_json()["id"]
    second = api.submit("system.sleep", {"ms": 1}, tags=["checkout"], delay=60).get_json()["id"]
    api.submit("system.noop", tags=["other"])
    theirs = api.as_("globex").submit("system.noop", tags=["checkout"]).get_json()["id"]

    job = api.get(f"/v1/jobs/{first}").get_json()
    assert job["tags"] == ["checkout", "eu/west:1"] and job["metadata"] == metadata
    assert api.get(f"/v1/jobs/{second}").get_json()["metadata"] == {}

    listed = api.get("/v1/jobs?tag=checkout").get_json()
    assert [j["id"] for j in listed["jobs"]] == [second, first]  # newest first; the delayed one by its due time
    assert [j["id"] for j in api.as_("globex").get("/v1/jobs?tag=checkout").get_json()["jobs"]] == [theirs]
    assert {j["id"] for j in api.as_("admin").get("/v1/jobs?tag=checkout").get_json()["jobs"]} == {
        first,
        second,
        theirs,
    }
    assert [j["id"] for j in api.get("/v1/jobs?tag=checkout&state=scheduled").get_json()["jobs"]] == [second]
    assert [j["id"] for j in api.get("/v1/jobs?tag=checkout&type=system.noop").get_json()["jobs"]] == [first]
    assert api.get("/v1/jobs?tag=eu/west:1").get_json()["jobs"][0]["id"] == first
    assert api.get("/v1/jobs?tag=nobody").get_json() == {"jobs": [], "next_cursor": None}

    page = api.get("/v1/jobs?tag=checkout&limit=1").get_json()
    rest = api.get(f"/v1/jobs?tag=checkout&limit=1&cursor={page['next_cursor']}").get_json()
    assert [j["id"] for j in page["jobs"] + rest["jobs"]] == [second, first] and rest["next_cursor"] is None


@pytest.mark.parametrize("tag", ["has space", "x" * 65, "semi;colon"])
def test_a_bad_tag_filter_is_a_422(api: Api, tag: str) -> None:
    response = api.get("/v1/jobs", query_string={"tag": tag})
    assert response.status_code == 422 and response.get_json()["errors"][0]["field"] == "tag"


def test_the_sdk_publisher_takes_tags_and_metadata(publisher: Publisher) -> None:
    submitted = publisher.publish("system.noop", tenant="acme", tags=["sdk"], metadata={"from": "python"})
    record = publisher.store.queries.get(submitted.job_id)
    assert record is not None and record.tags == ["sdk"] and record.metadata == {"from": "python"}
    page = publisher.store.queries.list_jobs(tenant="acme", tag="sdk")
    assert [r.id for r in page.records] == [submitted.job_id]


def test_the_trim_drops_tag_entries_whose_record_expired_and_keeps_the_rest(api: Api, publisher: Publisher) -> None:
    store = publisher.store
    gone, kept = (api.submit("system.noop", tags=["batch-7"]).get_json()["id"] for _ in range(2))
    store.client.pexpire(store.keys.job(gone), 1)  # its retention ends, as a finished job's does
    time.sleep(0.05)
    later = int(time.time() * 1000) + store.retention.ttl_ms(JobState.SUCCEEDED) + 1000
    store.janitor.trim_indexes(now=later)
    assert store.client.zrange(store.keys.tag("acme", "batch-7"), 0, -1) == [kept]
    store.client.delete(store.keys.job(kept), store.keys.trim_lock)
    store.janitor.trim_indexes(now=later)
    assert not store.client.exists(store.keys.tag("acme", "batch-7"))
    assert "batch-7" not in store.client.smembers(store.keys.tags("acme"))
