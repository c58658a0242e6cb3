"""The pure parts of web push: the message's encrypted size, the key checks, the VAPID key forms."""

from __future__ import annotations

import pytest
from pywebpush import WebPusher

from offload.contracts.push import MAX_ENCRYPTED_BYTES, SEND, SendPushPayload, encrypted_size, on_p256
from offload.errors import ValidationFailed
from offload.vapid import new_private_key, public_key_of
from tests.support.push import Browser, b64url, b64url_decode


@pytest.mark.parametrize("body", ["", "short", "é" * 500, "x" * 3900, "😀" * 990])
def test_the_computed_size_is_what_the_encryption_library_produces(body: str) -> None:
    """The size the API refuses by is the size of what the worker sends (pywebpush's aes128gcm)."""
    browser = Browser()
    payload = SendPushPayload.model_construct(title="T", body=body, url=None, icon=None)
    message = payload.message()
    encrypted = WebPusher({"endpoint": "https://127.0.0.1/x", "keys": browser.keys()}).encode(message)["body"]
    assert len(encrypted) == encrypted_size(message)
    assert browser.decrypt(encrypted) == message  # and the test's own decryption reads it back


def test_the_limit_is_exact_to_the_byte() -> None:
    overhead = encrypted_size(b"")
    fits = "x" * (MAX_ENCRYPTED_BYTES - overhead - len(b'{"title":"T","body":""}'))
    exact = SendPushPayload.model_validate({"user_id": "u", "title": "T", "body": fits})
    assert encrypted_size(exact.message()) == MAX_ENCRYPTED_BYTES
    with pytest.raises(ValidationFailed) as caught:
        SEND.parse({"user_id": "u", "title": "T", "body": fits + "x"})
    assert caught.value.code == "push_message_too_large"


def test_a_p256_point_is_checked_on_the_curve() -> None:
    point = b64url_decode(Browser().keys()["p256dh"])
    assert on_p256(point)
    assert not on_p256(point[:-1] + bytes([point[-1] ^ 1]))  # y changed: off the curve
    assert not on_p256(b"\x02" + point[1:33])  # compressed form
    assert not on_p256(b"\x04" + b"\xff" * 64)  # coordinates past the field's prime


def test_a_vapid_private_key_gives_the_public_key_browsers_take() -> None:
    private = new_private_key()
    public = b64url_decode(public_key_of(private))
    assert len(b64url_decode(private)) == 32 and len(public) == 65 and on_p256(public)
    with pytest.raises(ValueError, match="32 bytes"):
        public_key_of(b64url(b"short"))
