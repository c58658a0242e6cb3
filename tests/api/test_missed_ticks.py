"""Missed schedule ticks are never silent: the scheduler counts them in Redis (F19), and the API
shows the count in ``GET /v1/schedules`` and as ``offload_cron_ticks_missed_total`` on ``/metrics``."""

from __future__ import annotations

import re

from offload.publish import Publisher
from offload_api.app import create_app
from tests.support import Api, make_settings

HOURLY = "stats.aggregate.hourly"


def _missed_metric(publisher: Publisher) -> dict[str, float]:
    metered = Api(create_app(make_settings(metrics=True), publisher=publisher).test_client(), "admin")
    text = metered.get("/metrics").get_data(as_text=True)
    found = re.findall(r'^offload_cron_ticks_missed_total\{schedule="([^"]+)"\} (\S+)$', text, re.M)
    return {name: float(value) for name, value in found}


def test_ticks_missed_while_no_scheduler_ran_are_listed_and_exported(api: Api, publisher: Publisher) -> None:
    store = publisher.store
    store.client.delete(store.keys.scheduler_missed)
    try:
        store.client.hincrby(store.keys.scheduler_missed, HOURLY, 3)  # what a scheduler restarted 3 ticks late records
        listed = {s["name"]: s for s in api.get("/v1/schedules").get_json()["schedules"]}
        assert listed[HOURLY]["missed_runs"] == 3
        assert {s["missed_runs"] for name, s in listed.items() if name != HOURLY} == {0}
        exported = _missed_metric(publisher)
        assert exported.keys() == listed.keys()
        assert exported[HOURLY] == 3 and {v for k, v in exported.items() if k != HOURLY} == {0}
    finally:
        store.client.delete(store.keys.scheduler_missed)
