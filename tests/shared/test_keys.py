"""Every Redis key shape, pinned: renaming one would strand the data a deployment already holds."""

from __future__ import annotations

import hashlib

import pytest

from offload.status.keys import TEST_DB_OWNER, Keys
from offload.status.states import JobState

KEYS = Keys("offload")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (KEYS.job("j1"), "offload:job:j1"),
        (KEYS.logs("j1"), "offload:job:j1:logs"),
        (KEYS.history("j1"), "offload:job:j1:history"),
        (KEYS.index("acme", "image.resize", JobState.SUCCEEDED), "offload:idx:acme:t:image.resize:s:succeeded"),
        (KEYS.index("_all", "email.send", JobState.QUEUED), "offload:idx:_all:t:email.send:s:queued"),
        (KEYS.any_index, "offload:idx:*"),
        (KEYS.types("acme"), "offload:types:acme"),
        (KEYS.types("_all"), "offload:types:_all"),
        (KEYS.tenants, "offload:tenants"),
        (KEYS.scheduled, "offload:scheduled"),
        (KEYS.outbox, "offload:outbox"),
        (KEYS.events("j1"), "offload:events:j1"),
        (KEYS.flow("f1"), "offload:flow:f1"),
        (KEYS.flow_ended("f1"), "offload:flow:f1:ended"),
        (KEYS.flow_events("f1"), "offload:flow-events:f1"),
        (KEYS.aborted("j1"), "offload:aborted:j1"),
        (KEYS.idem("acme", "k-1"), "offload:idem:acme:k-1"),
        (KEYS.stalled("j1", "2"), "offload:stalled:j1:2"),
        (KEYS.stalled("j1", 0), "offload:stalled:j1:0"),
        (KEYS.trim_lock, "offload:trim-lock"),
        (KEYS.migrate_lock, "offload:migrate-lock"),
        (KEYS.layout, "offload:layout"),
        (KEYS.dead_letter("m1"), "offload:dead-letter:m1"),
        (KEYS.dead_letter("m" * 101), "offload:dead-letter:" + hashlib.sha256(b"m" * 101).hexdigest()),
        (KEYS.batches, "offload:batches"),
        (KEYS.upload("u1"), "offload:upload:u1"),
        (KEYS.effect("email", "j1"), "offload:effect:email:j1"),
        (
            KEYS.webhook_gone("acme", "https://example.com/hook"),
            "offload:webhook-gone:acme:" + hashlib.sha256(b"https://example.com/hook").hexdigest()[:32],
        ),
        (KEYS.webhook_secret("acme"), "offload:webhook-secret:acme"),
        (KEYS.push_subscriptions("acme", "u1"), "offload:push:subs:acme:u1"),
        (KEYS.push_owners("acme"), "offload:push:owners:acme"),
        (KEYS.push_public_key, "offload:push:vapid-public-key"),
        (
            KEYS.breaker("example.com:443"),
            (
                "offload:breaker:example.com:443:failures",
                "offload:breaker:example.com:443:open",
                "offload:breaker:example.com:443:tripped",
            ),
        ),
        (KEYS.quota("emails", "acme", 3600), "offload:quota:emails:acme:3600"),
        (KEYS.slots("report.build|acme"), "offload:slots:report.build|acme"),
        (KEYS.slots_waiting("report.build|acme"), "offload:slots:report.build|acme:waiting"),
        (KEYS.slots_with_waiters, "offload:slots-waiting"),
        (KEYS.tenant_rate("acme"), "offload:rate:acme"),
        (KEYS.send_rate("smtp"), "offload:send-rate:smtp"),
        (KEYS.paused, "offload:paused"),
        (KEYS.parked("media"), "offload:parked:media"),
        (KEYS.parked_targets, "offload:parked-targets"),
        (KEYS.catalogue, "offload:catalogue"),
        (KEYS.catalogue_version, "offload:catalogue:version"),
        (KEYS.catalogue_workers("image.resize"), "offload:catalogue:workers:image.resize"),
        (KEYS.scheduler_leader, "offload:scheduler:leader"),
        (KEYS.scheduler_last("hourly"), "offload:scheduler:last:hourly"),
        (KEYS.scheduler_ran, "offload:scheduler:ran"),
        (KEYS.scheduler_missed, "offload:scheduler:missed"),
        (KEYS.stats("2024-05-01T10:00:00+00:00"), "offload:stats:2024-05-01T10:00:00+00:00"),
        (KEYS.stats_hours, "offload:stats:hours"),
        (KEYS.bad_keys("10.0.0.1", 28_000_000), "offload:authfail:10.0.0.1:28000000"),
        (KEYS.signin_failures("address", "10.0.0.1"), "offload:signin:failures:address:10.0.0.1"),
        (KEYS.signin_wait("key", "ab12"), "offload:signin:wait:key:ab12"),
        (KEYS.admin_session("s1"), "offload:admin-session:s1"),
        (KEYS.api_key("k1"), "offload:apikey:k1"),
        (KEYS.api_keys, "offload:apikeys"),
        (KEYS.api_keys_version, "offload:apikeys:version"),
        (KEYS.audit, "offload:audit"),
        (KEYS.audit_exported, "offload:audit:exported"),
        (TEST_DB_OWNER, "offloadtest:owner"),
    ],
)
def test_each_key_shape_is_spelled_as_deployments_store_it(key: object, expected: object) -> None:
    assert key == expected


def test_the_prefix_is_the_deployments() -> None:
    assert Keys("acme-prod").job("j1") == "acme-prod:job:j1"
    assert Keys("acme-prod").catalogue_workers("x") == "acme-prod:catalogue:workers:x"


def test_layout2_indexes_are_told_from_layout1s() -> None:
    layout2 = KEYS.layout2_index
    assert layout2.match(KEYS.index("acme", "image.resize", JobState.RUNNING))
    assert layout2.match(KEYS.index("_all", "a:b", JobState.DEAD))  # a type may hold a colon
    for layout1 in ("offload:idx:acme", "offload:idx:_all", "offload:idx:acme:t:x", "offload:idx:acme:s:queued"):
        assert not layout2.match(layout1)
    assert not layout2.match("other:idx:acme:t:x:s:queued")


def test_a_script_is_handed_a_key_without_the_prefix() -> None:
    assert KEYS.suffix(KEYS.scheduled) == "scheduled"
    assert KEYS.suffix(KEYS.outbox) == "outbox"
