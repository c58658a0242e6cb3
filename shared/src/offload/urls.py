"""The one SSRF guard: every user-supplied URL (callbacks, report sources, image sources) passes here.

A URL is allowed only if it is ``https`` (or ``http`` where settings allow), has no user info, uses
an allowed port, and every address its host resolves to is globally routable. Hosts listed in
``allow_hosts`` (development and tests, e.g. ``127.0.0.1``) skip the address check.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit, urlunsplit

from offload.errors import ValidationFailed

#: The longest URL accepted, in characters.
MAX_URL_LENGTH = 2048

Resolver = Callable[[str, int], list[str]]


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class Target:
    """A vetted URL, pinned to one address.

    Attributes:
        url: the URL to connect to, with the vetted IP in place of the host name.
        host: the original host name (for TLS server name and certificate checks).
        host_header: the original ``host[:port]``, for the ``Host`` header.
        address: the vetted IP.
    """

    url: str
    host: str
    host_header: str
    address: str


@dataclass(frozen=True)
class UrlPolicy:
    """Which outbound URLs are allowed.

    Args:
        allow_http: accept plain ``http`` (development only).
        allowed_ports: ports a URL may name; the scheme's default port is always allowed.
        allow_hosts: hosts exempt from the public-address check (loopback receivers in tests).
        resolver: ``(host, port) -> [ip, ...]``; tests pass their own.
    """

    allow_http: bool = False
    allowed_ports: Collection[int] = (443, 80, 8443, 8080)
    allow_hosts: Collection[str] = ()
    resolver: Resolver = field(default=_system_resolver, compare=False)

    def check(self, url: str, *, field_name: str = "url") -> str:
        """Return ``url`` unchanged if it may be fetched; otherwise raise.

        Raises:
            ValidationFailed: code ``url_not_allowed`` or ``scheme_not_allowed``, naming the reason.
        """
        self.target(url, field_name=field_name)
        return url

    def target(self, url: str, *, field_name: str = "url") -> Target:
        """Vet ``url`` and pin it: resolve its host once and return where to connect.

        Connecting to :attr:`Target.url` (an IP literal in place of the host) means no second DNS
        lookup can point the request elsewhere (DNS rebinding, reliability-security.md §7.7 row 43).

        Raises:
            ValidationFailed: code ``url_not_allowed`` or ``scheme_not_allowed``, naming the reason.
        """
        parts = self._split(url, field_name)
        host = parts.hostname or ""
        exempt = host in self.allow_hosts
        if not exempt and parts.port is not None and parts.port not in self.allowed_ports:
            raise _refuse(field_name, f"port {parts.port} is not allowed")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = self._resolve(host, port, field_name)
        if not exempt:
            for address in addresses:
                if not _is_public(address):
                    raise _refuse(field_name, "it points to a private, loopback or reserved address")
        pinned = addresses[0]
        literal = f"[{pinned}]" if pinned.version == 6 else str(pinned)
        netloc = f"{literal}:{port}"
        host_header = parts.netloc.rpartition("@")[2]
        return Target(
            url=urlunsplit(parts._replace(netloc=netloc)), host=host, host_header=host_header, address=str(pinned)
        )

    def _split(self, url: str, field_name: str) -> SplitResult:
        if len(url) > MAX_URL_LENGTH:
            raise _refuse(field_name, f"it is longer than {MAX_URL_LENGTH} characters")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            raise _refuse(field_name, "it is not a valid URL") from None
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in schemes:
            raise ValidationFailed(
                f"The URL in {field_name!r} is not allowed: the scheme must be one of {list(schemes)}.",
                code="scheme_not_allowed",
                errors=[{"field": field_name, "problem": "scheme not allowed"}],
            )
        if not parts.hostname:
            raise _refuse(field_name, "it has no host")
        if parts.username is not None or parts.password is not None:
            raise _refuse(field_name, "it contains user info")
        return parts

    def _resolve(self, host: str, port: int, field_name: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        try:
            return [ipaddress.ip_address(ip.split("%")[0]) for ip in self.resolver(host, port)]
        except (OSError, UnicodeError, ValueError):
            raise _refuse(field_name, "its host does not resolve") from None


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _refuse(field_name: str, reason: str) -> ValidationFailed:
    return ValidationFailed(
        f"The URL in {field_name!r} is not allowed: {reason}.",
        code="url_not_allowed",
        errors=[{"field": field_name, "problem": reason}],
    )
