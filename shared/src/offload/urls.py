"""The one SSRF guard: every user-supplied URL (callbacks, report sources, image sources) passes here.

A URL is allowed only if it is ``https`` (or ``http`` where settings allow), has no user info, uses
an allowed port, names its host in ASCII, and every address its host resolves to is globally
routable. Hosts listed in ``allow_hosts`` (development and tests, e.g. ``127.0.0.1``) skip the
address check.

Links Offload never fetches but shows to people (an email's ``href``) pass :func:`check_link`,
which checks their scheme and shape only.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit, urlunsplit

from offload import problems
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
                errors=[problems.in_body(field_name, "scheme_not_allowed", "scheme not allowed")],
            )
        if not parts.hostname:
            raise _refuse(field_name, "it has no host")
        if parts.username is not None or parts.password is not None:
            raise _refuse(field_name, "it contains user info")
        if _internationalised(parts.hostname):
            raise _refuse(field_name, "internationalised host names are not accepted (homographs)")
        return parts

    def _resolve(self, host: str, port: int, field_name: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        try:
            return [ipaddress.ip_address(ip.split("%")[0]) for ip in self.resolver(host, port)]
        except (OSError, UnicodeError, ValueError):
            raise _refuse(field_name, "its host does not resolve") from None


def _internationalised(host: str) -> bool:
    """True for a host name in Unicode or with a punycode (``xn--``) label.

    Such a name can look exactly like another (``аpple.com`` with a Cyrillic ``а``: an IDN
    homograph, reliability-security.md §7.7 row 45); callback and source hosts are machines'
    names, which are ASCII in practice, so none is accepted rather than guessing at scripts.
    """
    return not host.isascii() or any(label.startswith("xn--") for label in host.lower().split("."))


#: Special-purpose ranges that are never globally reachable (IANA's registries), refused whatever
#: the interpreter's ``ipaddress`` says: its copy of the registries depends on the Python version
#: (3.11 calls 192.0.0.8, the deprecated site-local fec0::/10 and the documentation range 3fff::/20
#: global). ``is_global`` is checked as well.
_NOT_GLOBAL = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/96",  # the unspecified and loopback addresses, and the deprecated IPv4-compatible ::a.b.c.d
        "64:ff9b:1::/48",  # local-use NAT64 (RFC 8215)
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "3fff::/20",
        "5f00::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
#: IPv6 prefixes whose last 32 bits are an IPv4 address the packets reach: SIIT's IPv4-translated
#: addresses (RFC 2765) and NAT64's well-known prefix (RFC 6052). IPv4-mapped addresses and 6to4
#: (2002::/16) are read by ``ipaddress`` itself.
_CARRY_IPV4 = (ipaddress.IPv6Network("::ffff:0:0:0/96"), ipaddress.IPv6Network("64:ff9b::/96"))


def _carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, translated, NAT64, 6to4), or None."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in prefix for prefix in _CARRY_IPV4):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for a globally reachable unicast address; an IPv6 one carrying IPv4 is judged by that IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        carried = _carried_ipv4(address)
        if carried is not None:
            return _is_public(carried)
    if any(address in network for network in _NOT_GLOBAL if network.version == address.version):
        return False
    return address.is_global and not address.is_multicast


def _refuse(field_name: str, reason: str) -> ValidationFailed:
    return ValidationFailed(
        f"The URL in {field_name!r} is not allowed: {reason}.",
        code="url_not_allowed",
        errors=[problems.in_body(field_name, "url_not_allowed", reason)],
    )


def check_link(url: object, *, allow_http: bool, field_name: str) -> None:
    """Refuse a link shown to people (an ``href`` in an email) that is not a plain web address.

    A link must be a string holding an absolute ``https`` URL (``http`` too with ``allow_http``)
    with a host, no user info (``https://bank.example@evil.example/`` reads as the bank) and no
    whitespace or control character (``urlsplit`` drops tabs and line breaks, so
    ``java<TAB>script:`` would read as ``javascript:``). Any other scheme (``javascript:``,
    ``data:``, ``vbscript:``) runs or loads in the reader's mail client, and a relative or
    scheme-relative link points wherever the client resolves it (issue 29, item 9). Offload never
    fetches a link, so the SSRF guard's address rules do not apply to it.

    Raises:
        ValidationFailed: ``scheme_not_allowed`` (another scheme, or none) or ``url_not_allowed``.
    """
    schemes = ("https", "http") if allow_http else ("https",)
    if not isinstance(url, str) or not url or any(ch.isspace() or not ch.isprintable() for ch in url):
        raise _refuse(field_name, "a link must be a URL with no spaces or control characters")
    if len(url) > MAX_URL_LENGTH:
        raise _refuse(field_name, f"it is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _refuse(field_name, "it is not a valid URL") from None
    if parts.scheme not in schemes:
        raise ValidationFailed(
            f"The link in {field_name!r} is not allowed: it must be an absolute URL with a scheme in {list(schemes)}.",
            code="scheme_not_allowed",
            errors=[
                problems.in_body(
                    field_name, "scheme_not_allowed", f"a link must be an absolute {' or '.join(schemes)} URL"
                )
            ],
        )
    if not parts.hostname or "@" in parts.netloc:
        raise _refuse(field_name, "a link must name a host, with no user info")
