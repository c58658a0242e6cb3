"""The managed-key store and the audit log in Redis (issue 23): fast checks of what they promise."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import redis

from offload.api_keys import ApiKeyRequest, Grant, digest, env_grants
from offload.errors import InvalidState
from offload.settings import ApiKey
from offload.status import StatusStore
from offload.status.api_keys import ApiKeyStore, grant_table
from offload.status.audit import AuditEntry, AuditLog
from tests.support import REDIS_URL


@pytest.fixture
def status(redis_client: redis.Redis) -> StatusStore:
    return StatusStore.from_url(REDIS_URL)


def test_only_the_digest_of_a_secret_is_stored_and_it_grants_what_was_asked(
    status: StatusStore, redis_client: redis.Redis
) -> None:
    keys = ApiKeyStore(status)
    made, secret = keys.create(ApiKeyRequest(name="ci", tenant="acme", role="reader", scopes=["email.*"]), by="me")
    assert secret.startswith("ofk_") and len(secret) >= 40
    stored = redis_client.hgetall(f"offload:apikey:{made.id}")
    assert secret not in str(stored) and stored["digest"] == hashlib.sha256(secret.encode()).hexdigest()
    [grant] = grant_table(keys.all()).values()
    assert (grant.tenant, grant.role, grant.key_id, grant.valid_until) == ("acme", "reader", made.id, None)
    assert grant.may_submit("email.send") and not grant.may_submit("image.resize")
    assert keys.version() == 1 and keys.get(made.id) == made and keys.get("key_nope") is None


def test_rotation_keeps_two_secrets_at_most_and_revocation_none(status: StatusStore) -> None:
    keys = ApiKeyStore(status)
    expires = datetime.now(UTC) + timedelta(days=1)
    made, first = keys.create(ApiKeyRequest(name="ci", tenant="acme", expires_at=expires), by="me")
    _, second = keys.rotate(made.id, overlap_seconds=60) or ("", "")
    table = grant_table(keys.all())
    assert set(table) == {digest(first), digest(second)}
    old, new = table[digest(first)], table[digest(second)]
    assert new.valid_until == pytest.approx(expires.timestamp(), abs=0.01)  # the key's own expiry
    assert old.valid_until is not None and old.valid_until < expires.timestamp()  # the overlap's end, sooner
    rotated = keys.rotate(made.id, overlap_seconds=0)
    assert rotated is not None
    assert digest(first) not in grant_table(keys.all())  # an earlier overlap ends at the next rotation
    assert keys.revoke(made.id) is not None and grant_table(keys.all()) == {}
    assert keys.revoke(made.id) is not None and keys.version() == 4  # revoking again changes nothing
    with pytest.raises(InvalidState):
        keys.rotate(made.id, overlap_seconds=0)
    assert keys.rotate("key_nope", overlap_seconds=0) is None and keys.revoke("key_nope") is None


def test_grants_check_their_own_end_and_env_keys_never_end() -> None:
    grant = Grant("acme", "client", key_id="key_1", valid_until=100.0)
    assert grant.valid_at(99.9) and not grant.valid_at(100.0)
    [env] = env_grants({"a-long-enough-secret": ApiKey("acme", "admin")}).values()
    assert env.key_id is None and env.valid_at(1e12) and env.may_submit("anything")


def test_last_used_times_are_written_in_one_batch_and_skip_gone_keys(status: StatusStore) -> None:
    keys = ApiKeyStore(status)
    made, _ = keys.create(ApiKeyRequest(name="ci", tenant="acme"), by="me")
    keys.touch({made.id: 1_800_000_000_000, "key_gone": 1})
    touched = keys.get(made.id)
    assert touched is not None and touched.last_used_at == 1_800_000_000_000
    assert keys.get("key_gone") is None  # no half record was made for it
    assert keys.version() == 1  # usage is no change of the keys: no process reloads for it


def test_the_audit_log_pages_newest_first_filters_and_keeps_at_most_its_cap(status: StatusStore) -> None:
    log = AuditLog(status, retention=3600, max_entries=100)
    for number in range(250):
        log.record(AuditEntry("me", "key.create" if number % 2 else "queue.pause", str(number), "ok", "127.0.0.1"))
    assert status.client.xlen(status.keys.audit) < 250  # trimmed near its cap (approximately, as Redis does)
    first, cursor = log.page(limit=3)
    assert [e.target for e in first] == ["249", "248", "247"] and cursor is not None
    second, _ = log.page(limit=3, cursor=cursor)
    assert [e.target for e in second] == ["246", "245", "244"]
    keys, _ = log.page(action="key.", limit=2)
    assert [e.target for e in keys] == ["249", "247"]
    assert log.page(action="queue.pause", since=first[0].at + 1)[0] == []
    with pytest.raises(ValueError):
        log.page(cursor="not-a-cursor")
    exported = log.unexported()
    assert exported[-1].target == "249"
    log.mark_exported(exported[-1].id)
    assert log.unexported() == []
