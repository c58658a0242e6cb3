"""reliability-security.md §7.8, rows 46-49: our signed webhooks, and the verify helper we publish.

Row 46 runs a real delivery (API, system and email workers over RabbitMQ and Redis, a receiver on
127.0.0.1) and checks it with the Standard Webhooks reference library; rows 47-49 give the helper
(``offload.webhooks.verify``) each forgery, with Redis for the replay guard.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from collections.abc import Callable

import dramatiq
import pytest
import redis
from standardwebhooks import Webhook

from offload.errors import WebhookVerificationError
from offload.publish import Publisher
from offload.status import StatusStore
from offload.status.secrets import SecretStore
from offload.webhooks import new_secret, sign, verify
from tests.helpers import wait_for
from tests.support import RunningWorker
from tests.support.security import CheckedApi
from tests.support.webhooks import Receiver

BODY = json.dumps({"type": "job.succeeded", "data": {"id": "j-1", "result": {"n": 1}}}, separators=(",", ":")).encode()


def test_row46_a_delivery_verifies_with_the_reference_library_same_id_fresh_timestamp_per_attempt(
    api: CheckedApi, publisher: Publisher, worker: RunningWorker, email_worker: dramatiq.Worker, receiver: Receiver
) -> None:
    receiver.answers = [(500, {}), (200, {})]  # the first attempt fails, the retry succeeds
    started = int(time.time())
    api.submit("system.noop", {"echo": "signed"}, callback_url=receiver.url)
    wait_for(lambda: len(receiver.received) == 2, timeout=30, interval=0.1)
    ended = int(time.time())
    secret = api.get("/v1/webhooks/secret").get_json()["secret"]
    events = [Webhook(secret).verify(body, headers) for headers, body in receiver.received]  # the reference library
    assert events[0]["data"] == events[1]["data"] and events[0]["data"]["result"] == {"echo": "signed"}
    (first, _), (second, _) = receiver.received
    assert first["webhook-id"] == second["webhook-id"]  # the same id on every retry
    stamps = [int(first["webhook-timestamp"]), int(second["webhook-timestamp"])]
    assert started <= stamps[0] < stamps[1] <= ended  # fresh on each attempt (the retry waits >= 1 s)
    # The secret: whsec_ and at least 24 random bytes, a new one for each tenant.
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert secret != api.as_("globex").get("/v1/webhooks/secret").get_json()["secret"]
    assert len({new_secret() for _ in range(100)}) == 100


def _headers(secret: str, *, body: bytes = BODY, stamp: int | None = None) -> dict[str, str]:
    return sign([secret], "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", body, timestamp=stamp)


def _flip_a_byte(secret: str) -> tuple[dict[str, str], bytes]:
    body = bytearray(BODY)
    body[10] ^= 0x01
    return _headers(secret), bytes(body)


def _reserialised(secret: str) -> tuple[dict[str, str], bytes]:
    return _headers(secret), json.dumps(json.loads(BODY), indent=1).encode()  # same JSON, other bytes


def _without(header: str) -> Callable[[str], tuple[dict[str, str], bytes]]:
    def forge(secret: str) -> tuple[dict[str, str], bytes]:
        headers = _headers(secret)
        del headers[header]
        return headers, BODY

    return forge


def _v2_only(secret: str) -> tuple[dict[str, str], bytes]:
    headers = _headers(secret)
    headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v2,")
    return headers, BODY


#: Row 47: each forgery and the code the helper refuses it with.
FORGED: dict[str, tuple[Callable[[str], tuple[dict[str, str], bytes]], str]] = {
    "row47-one-body-byte-flipped": (_flip_a_byte, "invalid_signature"),
    "row47-timestamp-301s-old": (
        lambda s: (_headers(s, stamp=int(time.time()) - 301), BODY),
        "timestamp_out_of_tolerance",
    ),
    "row47-timestamp-301s-ahead": (
        lambda s: (_headers(s, stamp=int(time.time()) + 301), BODY),
        "timestamp_out_of_tolerance",
    ),
    "row47-missing-signature": (_without("webhook-signature"), "invalid_signature"),
    "row47-missing-timestamp": (_without("webhook-timestamp"), "invalid_signature"),
    "row47-missing-id": (_without("webhook-id"), "invalid_signature"),
    "row47-v2-only": (_v2_only, "invalid_signature"),
    "row47-body-reserialised": (_reserialised, "invalid_signature"),
    "row47-other-secret": (lambda s: (_headers(new_secret()), BODY), "invalid_signature"),
}


@pytest.mark.parametrize(("forge", "code"), FORGED.values(), ids=FORGED.keys())
def test_row47_the_helper_refuses_each_forgery_comparing_in_constant_time(
    monkeypatch: pytest.MonkeyPatch, forge: Callable[[str], tuple[dict[str, str], bytes]], code: str
) -> None:
    secret = new_secret()
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", compare_digest)  # what offload.webhooks calls
    assert verify(secret, _headers(secret), BODY) == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"  # the genuine one passes
    assert compared, "signatures must be compared with hmac.compare_digest"
    headers, body = forge(secret)
    with pytest.raises(WebhookVerificationError) as refused:
        verify(secret, headers, body)
    assert refused.value.code == code


def test_row48_a_signature_header_whose_second_entry_is_valid_is_accepted(redis_client: redis.Redis) -> None:
    old, new = new_secret(), new_secret()
    genuine = _headers(new)
    genuine["webhook-signature"] = f"{_headers(old)['webhook-signature']} {genuine['webhook-signature']}"
    assert verify(new, genuine, BODY)  # key rotation: only the second entry is signed with this secret
    # The same, as our sender signs during a rotation (current and previous secret, both sent).
    store = SecretStore(StatusStore(redis_client))
    before = store.current("acme")
    after = store.rotate("acme")
    headers = sign(store.active("acme"), "msg_rotation", BODY)
    assert len(headers["webhook-signature"].split()) == 2
    assert verify(before, headers, BODY) == verify(after, headers, BODY) == "msg_rotation"


def test_row49_the_same_webhook_id_replayed_inside_the_window_is_a_duplicate(redis_client: redis.Redis) -> None:
    secret = new_secret()
    headers = _headers(secret)
    assert verify(secret, headers, BODY, replay_guard=redis_client) == headers["webhook-id"]
    with pytest.raises(WebhookVerificationError) as replayed:
        verify(secret, headers, BODY, replay_guard=redis_client)
    assert replayed.value.code == "duplicate"
    key = f"offload:webhook-seen:{headers['webhook-id']}"
    assert 290 <= int(redis_client.ttl(key)) <= 300  # SET NX with a five-minute TTL
    other = sign([secret], "msg_another", BODY)
    assert verify(secret, other, BODY, replay_guard=redis_client) == "msg_another"  # other ids still pass
