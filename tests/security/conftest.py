"""The API in-process with the test keys (as in tests/api)."""

from __future__ import annotations

from tests.api.conftest import api, app, client  # noqa: F401 - fixtures
