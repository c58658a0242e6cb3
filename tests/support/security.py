"""Fixtures and checks shared by the bad-input tests of reliability-security.md §7.

* :func:`clean` is the §7 convention applied to one response: no stack trace, broker or Redis URL
  or password in the body, and every error is ``{"error": code, "detail": text}``.
* :class:`CheckedApi` is the API test client of ``tests/api`` with :func:`clean` on every answer.
* :func:`egress` (automatic) refuses, in this process, every TCP connection to an address that is
  not loopback, and records every attempt: a test of a hostile URL can never send traffic off
  the machine (§7.7 "validate only"), and can assert that nothing tried to connect at all.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support import Api

#: What no response may contain (§7 conventions), and Python's traceback line marker.
LEAKS = ("Traceback", "amqp://", "redis://", "password", 'File "')


def clean(response: Any) -> Any:
    """``response``, after failing the test if its body leaks internals or an error is not ``{error, detail}``."""
    text = response.get_data().decode(errors="replace")
    assert not [leak for leak in LEAKS if leak in text], text[:300]
    if response.status_code >= 400:
        body = response.get_json(silent=True)
        assert body is not None and body["error"] and body["detail"], text[:300]
    return response


class CheckedApi(Api):
    """``tests.api.conftest.Api`` (calls as a test key) with :func:`clean` on every response."""

    def call(self, method: str, path: str, **kw: Any) -> Any:
        return clean(super().call(method, path, **kw))

    def as_(self, who: str) -> CheckedApi:
        return CheckedApi(self.client, who)

    def anonymous_get(self, path: str) -> Any:
        return clean(super().anonymous_get(path))


@dataclass
class Egress:
    """TCP connections this process tried while the test ran: ``(host, port)`` each."""

    attempts: list[tuple[str, int]] = field(default_factory=list)
    refused: list[tuple[str, int]] = field(default_factory=list)

    def to(self, host: str, port: int | None = None) -> list[tuple[str, int]]:
        """The attempts to ``host`` (and ``port``, if given)."""
        return [a for a in self.attempts if a[0] == host and (port is None or a[1] == port)]


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False  # a name: connecting would resolve it, which is traffic too
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


@pytest.fixture(autouse=True)
def egress(monkeypatch: pytest.MonkeyPatch) -> Iterator[Egress]:
    """Refuse (``ENETUNREACH``) and record any connection off loopback; fail the test if one was tried.

    Every test runs under it (a plugin of ``tests/conftest.py``): no test sends traffic off the machine.
    """
    record = Egress()
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def vet(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host, port = str(address[0]), int(address[1])
            record.attempts.append((host, port))
            if not _loopback(host):
                record.refused.append((host, port))
                raise OSError(errno.ENETUNREACH, "the tests send nothing off loopback")

    def connect(self: socket.socket, address: Any) -> None:
        vet(self, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        vet(self, address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield record
    assert record.refused == [], f"something tried to connect off loopback: {record.refused}"
