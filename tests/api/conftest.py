"""The API under test: the real app factory with the real publisher (Redis + RabbitMQ test vhost)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from offload.publish import Publisher
from offload.settings import Settings
from offload_api.app import create_app
from tests.conftest import KEYS

#: What no response may contain (reliability-security.md §7). "password" is checked as a word that is
#: not the name of the shipped ``password_reset`` template.
FORBIDDEN_IN_RESPONSES = re.compile(r"Traceback|amqp://|redis://|guest:guest|password(?!_reset)", re.IGNORECASE)


@pytest.fixture
def app(settings: Settings, publisher: Publisher) -> Flask:
    return create_app(settings, publisher=publisher)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class Api:
    """Calls the API as one of the test keys, checking that no response leaks internals."""

    def __init__(self, client: FlaskClient, who: str = "acme") -> None:
        self.client = client
        self.who = who

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {KEYS[self.who]}", **(extra or {})}

    def as_(self, who: str) -> Api:
        return Api(self.client, who)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        kw["headers"] = self.headers(kw.get("headers"))
        response = self.client.open(path, method=method, **kw)
        body = response.get_data().decode(errors="replace")
        response.close()  # releases a streamed file (downloads); the data stays cached
        leak = FORBIDDEN_IN_RESPONSES.search(body)
        assert leak is None, f"response to {method} {path} contains {leak.group(0) if leak else ''!r}"
        return response

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)

    def anonymous_get(self, path: str) -> Any:
        """A GET with no API key (signed links)."""
        response = self.client.get(path)
        response.get_data()
        response.close()
        return response

    def post(self, path: str, **kw: Any) -> Any:
        return self.call("POST", path, **kw)

    def submit(self, job_type: str = "system.noop", payload: dict[str, Any] | None = None, **options: Any) -> Any:
        body: dict[str, Any] = {"type": job_type, "payload": payload or {}}
        if options:
            body["options"] = options
        return self.post("/v1/jobs", json=body)


@pytest.fixture
def api(client: FlaskClient) -> Iterator[Api]:
    yield Api(client)
