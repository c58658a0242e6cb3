"""Fixtures of other tiers that the worker tests use (the wire entrance sends real email)."""

from __future__ import annotations
