"""A real push service on 127.0.0.1 that does what a browser's would: checks VAPID, and decrypts as the browser.

Each :class:`Browser` is made as a browser makes a subscription: a P-256 key pair and a 16-byte
auth secret of its own. The service verifies every request's ``Authorization: vapid t=<JWT>,k=<key>``
(ES256 over the JWT with the key in ``k``, audience the endpoint's origin, expiry at most 24 h
ahead: RFC 8292) and decrypts the body with the browser's private key (RFC 8291 ``aes128gcm``,
written here from the RFC with ``cryptography``, not with the library the worker encrypts with),
so a test asserts on what the user would see. It answers as a test scripts each endpoint: a
status and headers, or ``stall`` to keep the worker waiting.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import dramatiq
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import SecretStr

from offload.publish import Publisher
from offload.testing import serving
from offload.vapid import new_private_key
from offload_email.settings import EmailSettings
from offload_email.worker import SPEC
from tests.helpers import serve_http


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


@dataclass
class Browser:
    """One browser's subscription keys, made as a browser makes them."""

    private_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth_secret: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def public_bytes(self) -> bytes:
        return self.private_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)

    def keys(self) -> dict[str, str]:
        """``PushSubscription.toJSON().keys``."""
        return {"p256dh": b64url(self.public_bytes), "auth": b64url(self.auth_secret)}

    def decrypt(self, body: bytes) -> bytes:
        """The plaintext of an ``aes128gcm`` web push message (RFC 8291 §3.4, RFC 8188 §2)."""
        salt, record_size, id_length = body[:16], int.from_bytes(body[16:20], "big"), body[20]
        sender = body[21 : 21 + id_length]
        ciphertext = body[21 + id_length :]
        assert id_length == 65 and len(ciphertext) <= record_size, "one record, keyed by the sender's public key"
        shared = self.private_key.exchange(
            ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sender)
        )
        ikm = _hkdf(self.auth_secret, shared, b"WebPush: info\x00" + self.public_bytes + sender, 32)
        key = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
        nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
        padded = AESGCM(key).decrypt(nonce, ciphertext, None)
        content = padded.rstrip(b"\x00")
        assert content.endswith(b"\x02"), "the last record's delimiter"
        return content[:-1]


def verify_vapid(authorization: str, audience: str) -> dict[str, Any]:
    """The claims of a valid ``vapid t=...,k=...`` header for ``audience``; AssertionError naming what is wrong."""
    scheme, _, rest = authorization.partition(" ")
    assert scheme == "vapid", f"scheme {scheme!r}"
    params = dict(part.strip().split("=", 1) for part in rest.split(","))
    token, key = params["t"], b64url_decode(params["k"])
    header_b64, claims_b64, signature_b64 = token.split(".")
    header = json.loads(b64url_decode(header_b64))
    assert header == {"typ": "JWT", "alg": "ES256"}, header
    signature = b64url_decode(signature_b64)
    assert len(signature) == 64, "ES256 signatures are r || s, 32 bytes each"
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key)
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise AssertionError("the VAPID JWT's signature does not verify with its k") from None
    claims: dict[str, Any] = json.loads(b64url_decode(claims_b64))
    assert claims["aud"] == audience, claims
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600 + 5, claims
    assert claims["sub"].startswith(("mailto:", "https://")), claims
    claims["k"] = params["k"]
    return claims


@dataclass
class Delivery:
    """One request the push service received, checked and decrypted."""

    token: str
    headers: dict[str, str]
    size: int
    message: dict[str, Any] | None
    claims: dict[str, Any] | None
    problem: str | None
    #: When it arrived (``time.time()``).
    at: float


@dataclass
class PushService:
    """The push service's endpoints (one per browser), what arrived, and how to answer each endpoint."""

    port: int = 0
    browsers: dict[str, Browser] = field(default_factory=dict)
    answers: dict[str, list[tuple[int | str, dict[str, str]]]] = field(default_factory=dict)
    received: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def subscribe(self, token: str, *answers: tuple[int | str, dict[str, str]]) -> tuple[Browser, dict[str, Any]]:
        """A new browser at ``/push/<token>`` answering ``answers`` in turn (the last repeats; 201 by default)."""
        browser = Browser()
        with self.lock:
            self.browsers[token] = browser
            self.answers[token] = list(answers) or [(201, {})]
        return browser, {"endpoint": f"{self.origin}/push/{token}", "keys": browser.keys(), "expirationTime": None}

    def next_answer(self, token: str) -> tuple[int | str, dict[str, str]]:
        with self.lock:
            queue = self.answers.get(token, [(404, {})])
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def deliveries(self, token: str | None = None) -> list[Delivery]:
        with self.lock:
            return [d for d in self.received if token is None or d.token == token]


@pytest.fixture
def push_service() -> Iterator[PushService]:
    state = PushService()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            arrived = time.time()
            token = self.path.removeprefix("/push/")
            headers = {k.lower(): v for k, v in self.headers.items()}
            message = claims = problem = None
            try:
                claims = verify_vapid(headers.get("authorization", ""), state.origin)
                browser = state.browsers[token]
                assert headers.get("content-encoding") == "aes128gcm", headers.get("content-encoding")
                message = json.loads(browser.decrypt(body))
            except (AssertionError, KeyError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            with state.lock:
                state.received.append(Delivery(token, headers, len(body), message, claims, problem, arrived))
            status, extra = state.next_answer(token) if problem is None else (400, {})
            if status == "stall":
                time.sleep(float(extra.get("seconds", "3")))
                status, extra = 201, {}
            self.send_response(int(status))
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    with serve_http(Handler) as state.port:
        yield state


@pytest.fixture
def push_settings(email_settings: EmailSettings) -> EmailSettings:
    """The email service's settings with a fresh VAPID key, short timeouts and quick retries."""
    return email_settings.model_copy(
        update={
            "vapid_private_key": SecretStr(new_private_key()),
            "vapid_subject": "mailto:ops@example.com",
            "push_timeout": 1.5,
            "retry_backoff_scale": 0.1,
        }
    )


@pytest.fixture
def push_worker(push_settings: EmailSettings, publisher: Publisher) -> Iterator[dramatiq.Worker]:
    """The email service's worker in this process (it serves the push queue), with that key."""
    with serving(SPEC, push_settings, threads=4, stop_timeout_ms=10_000) as worker:
        yield worker
