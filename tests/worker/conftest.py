"""Fixtures of other tiers that the worker tests use (the wire entrance sends real email)."""

from __future__ import annotations

from tests.email.conftest import smtp_sink  # noqa: F401 - fixture
