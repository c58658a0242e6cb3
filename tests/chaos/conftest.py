"""The chaos scenarios use the whole-system fixtures (processes on loopback, their logs, a local
HTTP data source)."""

from __future__ import annotations

from tests.http_source import source  # noqa: F401 - fixture
from tests.system.conftest import env, logs, private_rabbitmq  # noqa: F401 - fixtures
