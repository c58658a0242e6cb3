"""Property tests (hypothesis) of what Offload parses from clients: job submissions and the SSRF guard.

* Any decoded JSON body, and any body shaped like a submission of any job type with arbitrary
  values, is either prepared or refused with a 422 whose ``errors`` fit the documented ``Error``
  schema; nothing else is ever raised (a 500).
* The SSRF guard refuses every URL whose host is a non-global address, however it is spelt:
  dotted, one decimal, hex or octal number, per-part hex or octal, the short ``a.b`` and ``a.b.c``
  forms, IPv4-mapped, -compatible and -translated IPv6, NAT64 and 6to4. Validate only: names are
  read by the C library in numeric-only mode (``AI_NUMERICHOST``), so no lookup ever leaves the
  process and nothing is connected to.
* Every parameter of the running API (``offload-api`` under gunicorn: each query, path and header
  parameter its OpenAPI document names, the ones it reads undocumented, and the admin pages'),
  given Unicode digits that are no ASCII number, times at the ends of what ``datetime`` holds,
  line breaks (CR, LF, U+2028, NEL) and NUL, or crafted cursors, is answered below 500: these
  shapes answered 500, or 503 as if Redis were down, before issue 29.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offload.contracts import BUILT_IN
from offload.errors import ClientError, ValidationFailed
from offload.submission import Preparer
from offload.urls import UrlPolicy
from tests.support import KEYS
from tests.system.stack import Api

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
PREPARER = Preparer(BUILT_IN, UrlPolicy(allow_http=True, resolver=numeric_only), max_delay=86_400 * 30)

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
    fields = list(BUILT_IN.get(job_type).payload.model_fields)
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
            st.sampled_from(BUILT_IN.names).flatmap(
                lambda name: st.fixed_dictionaries({"type": st.just(name), "payload": _payload(name)})
            )
            | JSON,
            max_size=3,
        )
        | JSON,
    },
)
SUBMISSIONS = st.sampled_from(BUILT_IN.names).flatmap(
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
    assert (name in BUILT_IN) == (isinstance(name, str) and name in BUILT_IN.names)


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


# --- Hostile shapes in every parameter of the running API (issue 29, item 5) -----------------


def _times() -> st.SearchStrategy[str]:
    """ISO 8601 times at and near the ends of ``datetime``'s years, with and without extreme offsets."""
    offsets = st.sampled_from([None, UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=14))])
    ends = st.sampled_from([datetime(1, 1, 1), datetime(1, 1, 2, 3), datetime(9999, 12, 31, 23, 59, 59)])
    moments = ends | st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31))
    return st.builds(lambda moment, tz: moment.replace(tzinfo=tz).isoformat(), moments, offsets)


#: Digits ``str.isdigit()`` accepts that are not ASCII (superscripts, circled, other scripts, full width).
UNICODE_DIGITS = st.text(
    st.characters(categories=["Nd", "No"], exclude_characters="0123456789"), min_size=1, max_size=6
) | st.sampled_from(["²", "①", "١٢", "１０", "9" * 5000])
#: Line breaks and NUL inside a value, as a header injection or a redirect would carry them.
BREAKS = st.builds(
    "{}{}{}".format,
    st.sampled_from(["", "/admin/", "12", "system"]),
    st.sampled_from(["\r\n", "\n", "\r", "\u2028", "\x85", "\x00", "%0D%0A"]),
    st.sampled_from(["", "Set-Cookie: x=1", "evil"]),
)
#: Cursors as the store encodes them (base64 of ``score:id``) with scores it never writes.
CURSORS = st.builds(
    lambda score, rest: base64.urlsafe_b64encode(f"{score}:{rest}".encode()).decode().rstrip("="),
    st.sampled_from(["nan", "inf", "-inf", "1e999", "-1", "²", "0x10", ""]) | UNICODE_DIGITS,
    st.sampled_from(["x", ""]),
)
HOSTILE = UNICODE_DIGITS | _times() | BREAKS | CURSORS

#: Parameters the API reads that its OpenAPI document does not name (schemathesis cannot find them).
UNDOCUMENTED = [
    ("GET", "/v1/stats", "query", "from"),
    ("GET", "/v1/stats", "query", "to"),
    ("GET", "/v1/stats", "query", "type"),
    ("GET", "/v1/jobs/{job_id}/events", "query", "last_event_id"),
]
#: The admin pages' parameters (signed in with the admin key).
ADMIN = [
    *(("GET", "/admin/jobs", "query", name) for name in ("id", "state", "type", "tenant", "cursor")),
    ("GET", "/admin/jobs/{job_id}", "path", "job_id"),
    ("GET", "/admin/dead-letters", "query", "queue"),
    ("GET", "/admin/dead-letters", "query", "page"),
    ("GET", "/admin/batches", "query", "id"),
    ("POST", "/admin/login", "query", "next"),
]


@dataclass
class Target:
    """The running API, with what its parameters need: an ended job of tenant acme and an admin session."""

    api: Api
    job_id: str
    admin: requests.Session
    parameters: list[tuple[str, str, str, str]]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api.port}"

    def sign_in(self, path: str = "/admin/login") -> requests.Response:
        """Sign the admin session in again (through ``path``, which may carry a ``next``)."""
        page = self.admin.get(f"{self.base}/admin/login", timeout=10).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token is not None, page[:300]
        form = {"key": KEYS["admin"], "csrf_token": token.group(1)}
        return self.admin.post(f"{self.base}{path}", data=form, allow_redirects=False, timeout=10)

    def send(self, method: str, path: str, place: str, name: str, value: str) -> requests.Response:
        """One request with ``value`` as parameter ``name``, every other parameter valid."""
        fill = {
            "job_id": self.job_id,
            "batch_id": "none",
            "flow_id": "none",
            "schedule_id": "none",
            "operation_id": "none",
            "key_id": "none",
            "queue": "system",
            "name": "system",
            "key": "acme/x/source",
        }
        if place == "path":
            fill[name] = quote(value, safe="")
        url = self.base + re.sub(r"\{(\w+)\}", lambda m: fill[m.group(1)], path)
        query = {name: value} if place == "query" else {}
        headers = {"Authorization": f"Bearer {KEYS['admin']}", "Accept": "text/event-stream, application/json"}
        if place == "header":
            headers[name] = value.encode()  # type: ignore[assignment] # sent as UTF-8 bytes
        if path.startswith("/admin/"):
            if path == "/admin/login":
                return self.sign_in(f"{path}?next={quote(value, safe='')}")
            return self.admin.request(method, url, params=query, allow_redirects=False, timeout=10)
        response = requests.request(
            method, url, params=query, headers=headers, timeout=10, allow_redirects=False, stream=True
        )
        if response.headers.get("Content-Type", "").startswith("text/event-stream"):
            response.close()  # a live stream (GET /v1/events) never ends: its answer is its status
        return response


@pytest.fixture(scope="module")
def target(live_api: Api) -> Iterator[Target]:
    status, _, job = live_api.request("POST", "/v1/jobs", {"type": "system.noop", "options": {"delay": 600}})
    assert status == 202, job
    assert live_api.request("POST", f"/v1/jobs/{job['id']}/cancel")[0] == 200  # ended: its stream closes at once
    document = requests.get(f"http://127.0.0.1:{live_api.port}/openapi.json", timeout=10).json()
    documented = [
        (method.upper(), path, parameter["in"], parameter["name"])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
    ]
    session = requests.Session()
    found = Target(live_api, job["id"], session, [*documented, *UNDOCUMENTED, *ADMIN])
    assert found.sign_in().status_code == 302
    yield found
    session.close()


def _answered_below_500(target: Target, parameter: tuple[str, str, str, str], value: str) -> None:
    method, path, place, name = parameter
    if place == "header" and re.search(r"[\r\n\x00]", value):
        return  # no client can send it (http.client and h11 refuse); gunicorn would answer 400
    response = target.send(method, path, place, name, value)
    assert response.status_code < 500, (method, path, place, name, value[:80], response.text[:300])


@pytest.mark.slow
@pytest.mark.parametrize(
    "value",
    ["²", "①", "١٢", "１０", "9" * 5000, "0001-01-01T00:00:00", "9999-12-31T23:59:59-14:00", "/admin/\r\nX: y"]
    + [base64.urlsafe_b64encode(b"nan:x").decode()],
    ids=["superscript", "circled", "arabic", "fullwidth", "5000", "year-1", "year-9999-west", "crlf", "nan-cursor"],
)
def test_what_the_review_sent_is_answered_below_500_in_every_parameter(target: Target, value: str) -> None:
    for parameter in target.parameters:
        _answered_below_500(target, parameter, value)


@pytest.mark.slow
@PROPERTY
@given(data=st.data(), value=HOSTILE)
def test_unicode_digits_extreme_times_line_breaks_and_crafted_cursors_are_answered_below_500_anywhere(
    target: Target, data: st.DataObject, value: str
) -> None:
    _answered_below_500(target, data.draw(st.sampled_from(target.parameters)), value)
