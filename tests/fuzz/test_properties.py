"""Property tests (hypothesis) of what Offload parses from clients: job submissions and the SSRF guard.

* Any decoded JSON body, and any body shaped like a submission of any job type with arbitrary
  values, is either prepared or refused with a 422 whose ``errors`` fit the documented ``Error``
  schema; nothing else is ever raised (a 500).
* The SSRF guard refuses every URL whose host is a non-global address, however it is spelt:
  dotted, one decimal, hex or octal number, per-part hex or octal, the short ``a.b`` and ``a.b.c``
  forms, IPv4-mapped, -compatible and -translated IPv6, NAT64 and 6to4. Validate only: names are
  read by the C library in numeric-only mode (``AI_NUMERICHOST``), so no lookup ever leaves the
  process and nothing is connected to.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offload.contracts import REGISTRY
from offload.errors import ClientError, ValidationFailed
from offload.submission import Preparer
from offload.urls import UrlPolicy

#: Examples per property: 300, or ten times ``OFFLOAD_FUZZ_EXAMPLES`` in ``make chaos``.
EXAMPLES = 10 * int(os.environ["OFFLOAD_FUZZ_EXAMPLES"]) if os.environ.get("OFFLOAD_FUZZ_EXAMPLES") else 300
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def numeric_only(host: str, port: int) -> list[str]:
    """Resolve ``host`` the way the C library reads a numeric host, and never through DNS."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    return [str(info[4][0]) for info in infos]


#: Production's policy (https only, no host exempt), with numeric-only resolution.
GUARD = UrlPolicy(resolver=numeric_only)
PREPARER = Preparer(REGISTRY, UrlPolicy(allow_http=True, resolver=numeric_only), max_delay=86_400 * 30)

# What ``json.loads`` can return for a request body (``1e999`` decodes to infinity; NaN is refused).
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


def _payload(job_type: str) -> st.SearchStrategy[dict[str, Any]]:
    """A payload of ``job_type``'s field names (and a stray one) with arbitrary JSON values."""
    fields = list(REGISTRY.get(job_type).payload.model_fields)
    keys = st.sampled_from(fields) | st.text(max_size=8) if fields else st.text(max_size=8)
    return st.dictionaries(keys, JSON, max_size=len(fields) + 1)


URLISH = st.sampled_from(["https://93.184.215.14/cb", "http://127.0.0.1:8080/x", "https://[::1]/", "ftp://a/"]) | JSON
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "priority": st.sampled_from(["high", "normal", "low"]) | JSON,
        "delay": st.floats(allow_nan=False) | JSON,
        "max_retries": st.integers(-5, 100) | JSON,
        "callback_url": URLISH,
        "then": st.lists(
            st.sampled_from(REGISTRY.names).flatmap(
                lambda name: st.fixed_dictionaries({"type": st.just(name), "payload": _payload(name)})
            )
            | JSON,
            max_size=3,
        )
        | JSON,
    },
)
SUBMISSIONS = st.sampled_from(REGISTRY.names).flatmap(
    lambda name: st.fixed_dictionaries(
        {"type": st.just(name)}, optional={"payload": _payload(name) | JSON, "options": OPTIONS | JSON}
    )
)


def _refused_as_documented(exc: ClientError) -> None:
    """A submission refusal is a 422 whose body fits the ``Error`` schema (``errors``: strings only)."""
    assert exc.status == 422, exc
    assert isinstance(exc.message, str) and exc.message
    errors = exc.errors if isinstance(exc, ValidationFailed) else []
    assert all(
        isinstance(error, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in error.items())
        for error in errors
    ), errors


@PROPERTY
@given(body=JSON | SUBMISSIONS | st.builds(dict, type=JSON, payload=JSON, options=JSON))
def test_any_json_body_is_prepared_or_refused_with_a_documented_422(body: Any) -> None:
    try:
        prepared = PREPARER.prepare(body, tenant="acme")
    except ClientError as exc:
        _refused_as_documented(exc)
    else:
        assert prepared.contract.name == body["type"]
        # What is stored and served back (GET /v1/jobs/{id}) must be JSON a client can parse.
        json.dumps(prepared.payload.model_dump(mode="json"), allow_nan=False)


@PROPERTY
@given(name=JSON)
def test_registry_membership_of_any_json_value_is_a_plain_answer(name: Any) -> None:
    assert (name in REGISTRY) == (isinstance(name, str) and name in REGISTRY.names)


# --- The SSRF guard --------------------------------------------------------------------------

NON_GLOBAL_V4 = [
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
]
NON_GLOBAL_V6 = [
    "::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "3fff::/20",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
]


def _in(networks: list[str]) -> st.SearchStrategy[Address]:
    def addresses(network: str) -> st.SearchStrategy[Address]:
        net = ipaddress.ip_network(network)
        return st.integers(int(net.network_address), int(net.broadcast_address)).map(
            lambda n: ipaddress.ip_address(n) if net.version == 4 else ipaddress.IPv6Address(n)
        )

    return st.sampled_from(networks).flatmap(addresses)


def _part(value: int, base: str) -> str:
    return {"dec": str(value), "hex": hex(value), "HEX": f"0X{value:X}", "oct": "0" + format(value, "o")}[base]


@st.composite
def v4_spellings(draw: st.DrawFn, address: ipaddress.IPv4Address) -> str:
    """``address`` as the C library (``inet_aton``) reads it: one number, or 2, 3 or 4 parts in any base."""
    n = int(address)
    octets = [n >> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255]
    parts = draw(
        st.sampled_from(
            [
                [n],
                [octets[0], n & 0xFFFFFF],
                [octets[0], octets[1], n & 0xFFFF],
                octets,
            ]
        )
    )
    return ".".join(_part(part, draw(st.sampled_from(["dec", "hex", "HEX", "oct"]))) for part in parts)


@st.composite
def v6_embeddings(draw: st.DrawFn, address: ipaddress.IPv4Address) -> str:
    """IPv6 addresses that carry ``address``: mapped, compatible, translated (SIIT), NAT64, 6to4."""
    n = int(address)
    hi, lo = f"{n >> 16:x}", f"{n & 0xFFFF:x}"
    return draw(
        st.sampled_from(
            [
                f"::ffff:{address}",
                f"::ffff:{hi}:{lo}",
                f"0:0:0:0:0:FFFF:{address}",
                f"::{address}",
                f"::{hi}:{lo}",
                f"::ffff:0:{address}",
                f"64:ff9b::{address}",
                f"64:ff9b::{hi}:{lo}",
                f"2002:{hi}:{lo}::1",
            ]
        )
    )


def _refused(url: str) -> None:
    try:
        target = GUARD.target(url)
    except ValidationFailed as exc:
        assert exc.code == "url_not_allowed", (url, exc.code)
    else:
        raise AssertionError(f"{url} was accepted, pinned to {target.address}")


@PROPERTY
@given(data=st.data(), address=_in(NON_GLOBAL_V4))
def test_a_non_global_ipv4_address_is_refused_in_every_spelling_the_c_library_reads(
    data: st.DataObject, address: ipaddress.IPv4Address
) -> None:
    spelling = data.draw(v4_spellings(address))
    assert numeric_only(spelling, 443) == [str(address)]  # the spelling does mean this address
    _refused(f"https://{spelling}/hook")


@PROPERTY
@given(data=st.data(), address=_in(NON_GLOBAL_V4))
def test_a_non_global_ipv4_address_is_refused_inside_any_ipv6_address_that_carries_it(
    data: st.DataObject, address: ipaddress.IPv4Address
) -> None:
    spelling = data.draw(v6_embeddings(address))
    _refused(f"https://[{spelling}]:443/hook")


@PROPERTY
@given(address=_in(NON_GLOBAL_V6), upper=st.booleans())
def test_a_non_global_ipv6_address_is_refused(address: ipaddress.IPv6Address, upper: bool) -> None:
    text = address.exploded.upper() if upper else str(address)
    _refused(f"https://[{text}]/hook")


@PROPERTY
@given(data=st.data(), octets=st.tuples(*[st.integers(0, 255)] * 4))
def test_a_global_ipv4_address_is_accepted_in_those_spellings_and_pinned_to_itself(
    data: st.DataObject, octets: tuple[int, int, int, int]
) -> None:
    address = ipaddress.IPv4Address(".".join(map(str, octets)))
    if any(address in ipaddress.ip_network(network) for network in NON_GLOBAL_V4):
        return
    spelling = data.draw(v4_spellings(address))
    assert GUARD.target(f"https://{spelling}/hook").address == str(address)


@PROPERTY
@given(url=st.text(max_size=60) | st.builds("https://{}/".format, st.text(max_size=40)))
def test_any_text_is_a_url_the_guard_pins_to_a_global_address_or_a_refusal(url: str) -> None:
    try:
        target = GUARD.target(url)
    except ValidationFailed as exc:
        assert exc.code in ("url_not_allowed", "scheme_not_allowed")
    else:
        pinned = ipaddress.ip_address(target.address)
        assert pinned.is_global and not pinned.is_multicast, url
