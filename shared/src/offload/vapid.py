"""VAPID keys (RFC 8292) in the forms settings and browsers take: both base64url, unpadded.

The private key is the P-256 scalar (32 bytes), as ``OFFLOAD_VAPID_PRIVATE_KEY`` holds it and as
``web-push`` and ``pywebpush`` read it; the public key is the uncompressed point (65 bytes), what a
page hands to ``pushManager.subscribe({applicationServerKey})``.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def b64url(data: bytes) -> str:
    """``data`` in base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_private_key() -> str:
    """A fresh VAPID private key (from the operating system's randomness)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))


def public_key_of(private_key: str) -> str:
    """The public key browsers subscribe with, for ``private_key``.

    Raises:
        ValueError: ``private_key`` is not a P-256 scalar in base64url.
    """
    raw = base64.urlsafe_b64decode(private_key + "=" * (-len(private_key) % 4))
    if len(raw) != 32:
        raise ValueError("a VAPID private key is 32 bytes")
    key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    return b64url(key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
