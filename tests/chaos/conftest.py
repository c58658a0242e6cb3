"""The chaos scenarios use the whole-system fixtures (processes on loopback, their logs)."""

from __future__ import annotations

from tests.system.conftest import env, logs, private_rabbitmq  # noqa: F401 - fixtures
