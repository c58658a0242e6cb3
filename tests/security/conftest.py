"""The bad-input tests' API client checks every answer (see :mod:`tests.support.security`)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.support.security import CheckedApi


@pytest.fixture
def api(client: FlaskClient) -> CheckedApi:
    return CheckedApi(client)
