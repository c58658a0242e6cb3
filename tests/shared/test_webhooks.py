"""Standard Webhooks signing and verification, checked against the reference library."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
import redis
from standardwebhooks import Webhook

from offload.errors import WebhookVerificationError
from offload.webhooks import new_secret, sign, verify

BODY = json.dumps({"id": "job-1", "state": "succeeded"}, separators=(",", ":")).encode()


def test_our_deliveries_verify_with_the_reference_library() -> None:
    secret = new_secret()
    headers = sign([secret], "msg_1", BODY)
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_reference_signatures_verify_with_our_helper() -> None:
    secret = new_secret()
    stamp = datetime.now(UTC)
    reference = Webhook(secret).sign("msg_2", stamp, BODY.decode())
    headers = {"Webhook-Id": "msg_2", "Webhook-Timestamp": str(int(stamp.timestamp())), "Webhook-Signature": reference}
    assert verify(secret, headers, BODY) == "msg_2"


def test_secrets_are_whsec_with_at_least_24_random_bytes_and_unique() -> None:
    secrets = {new_secret() for _ in range(50)}
    assert len(secrets) == 50 and all(s.startswith("whsec_") and len(s) >= 6 + 32 for s in secrets)


@pytest.mark.parametrize("tamper", ["body", "timestamp_old", "timestamp_new", "missing", "v2_only", "reserialised"])
def test_tampered_or_stale_deliveries_are_refused(tamper: str) -> None:
    secret = new_secret()
    now = int(time.time())
    headers, body = sign([secret], "msg_3", BODY, timestamp=now), BODY
    if tamper == "body":
        body = BODY[:-2] + bytes([BODY[-2] ^ 1]) + BODY[-1:]
    elif tamper == "timestamp_old":
        headers = sign([secret], "msg_3", BODY, timestamp=now - 301)
    elif tamper == "timestamp_new":
        headers = sign([secret], "msg_3", BODY, timestamp=now + 301)
    elif tamper == "missing":
        del headers["webhook-signature"]
    elif tamper == "v2_only":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v2,")
    elif tamper == "reserialised":
        body = json.dumps(json.loads(BODY), indent=1).encode()
    with pytest.raises(WebhookVerificationError) as caught:
        verify(secret, headers, body)
    assert caught.value.code in {"invalid_signature", "timestamp_out_of_tolerance"}


def test_during_a_rotation_a_signature_by_either_secret_is_accepted() -> None:
    old, new = new_secret(), new_secret()
    headers = sign([new, old], "msg_4", BODY)
    assert verify(old, headers, BODY) == "msg_4" and verify(new, headers, BODY) == "msg_4"
    only_second_valid = {**headers, "webhook-signature": "v1,AAAA " + headers["webhook-signature"].split()[1]}
    assert verify(old, only_second_valid, BODY) == "msg_4"


def test_a_replayed_delivery_is_reported_as_duplicate(redis_client: redis.Redis) -> None:
    secret = new_secret()
    headers = sign([secret], "msg_5", BODY)
    assert verify(secret, headers, BODY, replay_guard=redis_client) == "msg_5"
    with pytest.raises(WebhookVerificationError) as caught:
        verify(secret, headers, BODY, replay_guard=redis_client)
    assert caught.value.code == "duplicate"


def test_verify_compares_signatures_in_constant_time() -> None:
    import inspect

    import offload.webhooks

    assert "hmac.compare_digest" in inspect.getsource(offload.webhooks.verify)


@pytest.mark.parametrize(
    "stamp", ["²", "١٧٠٠٠٠٠٠٠٠", " 1700000000", "9" * 5000], ids=["superscript", "arabic", "space", "5000"]
)
def test_a_timestamp_that_is_not_ascii_digits_is_malformed_not_a_crash_or_another_spelling(stamp: str) -> None:
    secret = new_secret()
    headers = sign([secret], "msg_6", BODY)
    if stamp.strip() == "1700000000" or stamp.startswith("١"):  # the signed value, spelt differently
        headers = sign([secret], "msg_6", BODY, timestamp=1_700_000_000)
    headers["webhook-timestamp"] = stamp
    with pytest.raises(WebhookVerificationError) as caught:
        verify(secret, headers, BODY, now=1_700_000_000)
    assert caught.value.code == "invalid_signature"
