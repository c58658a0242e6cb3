"""Outbound HTTP to user-given URLs: vetted by the SSRF guard, pinned to the vetted address.

Every request goes to the IP the guard checked, never to a name resolved again, with the
original ``Host`` header; for ``https`` the TLS server name and certificate check use the original
host name, so pinning costs no security. Redirects are never followed.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter

from offload.errors import PermanentJobError, TransientJobError, ValidationFailed
from offload.urls import Target, UrlPolicy


class _PinnedTLS(HTTPAdapter):
    """Connects to an IP but checks TLS against the original host name."""

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self.host
        kwargs["assert_hostname"] = self.host
        super().init_poolmanager(*args, **kwargs)


def new_session() -> requests.Session:
    """A ``requests`` session for user-given URLs: environment settings ignored.

    ``trust_env=False`` keeps ``HTTP(S)_PROXY`` from routing a vetted request through a proxy (which
    would undo the pinning) and ``~/.netrc`` credentials from being sent to a user's host; it also
    spares each request a scan of the environment (a fifth of a webhook delivery's CPU).
    """
    session = requests.Session()
    session.trust_env = False
    return session


def pinned_request(
    method: str,
    url: str,
    *,
    policy: UrlPolicy,
    session: requests.Session | None = None,
    field_name: str = "url",
    **kwargs: Any,
) -> requests.Response:
    """Vet ``url``, pin it, and send the request to the vetted address (no redirects).

    Raises:
        ValidationFailed: the URL is not allowed (checked again here, at connect time).
        requests.RequestException: the request failed.
    """
    target: Target = policy.target(url, field_name=field_name)
    headers = {**kwargs.pop("headers", {}), "Host": target.host_header}
    client = session or new_session()
    if target.url.startswith("https://"):
        client = new_session()
        client.mount("https://", _PinnedTLS(target.host))
    try:
        return client.request(method, target.url, headers=headers, allow_redirects=False, **kwargs)
    finally:
        if client is not session:
            client.close()


def fetch_source(
    url: str, *, policy: UrlPolicy, read_timeout: float, field_name: str = "source.url"
) -> requests.Response:
    """Start a streamed GET of a job's source URL; the caller reads the body and closes the response.

    How a source fails is the same for every job type that has one (images, report rows): a URL
    the guard refuses, or a 4xx, fails the job for good; a network error or a 5xx retries it.

    Raises:
        PermanentJobError: the URL is not allowed (``url_not_allowed`` and the like), or the server
            answered other than 200 below 500 (``source_refused``).
        TransientJobError: the server could not be reached (``source_unreachable``) or failed (``source_failed``).
    """
    try:
        response = pinned_request(
            "GET", url, policy=policy, field_name=field_name, stream=True, timeout=(3.0, read_timeout)
        )
    except ValidationFailed as exc:
        raise PermanentJobError(exc.message, code=exc.code) from None
    except requests.RequestException as exc:
        raise TransientJobError(
            f"Could not fetch the source: {type(exc).__name__}.", code="source_unreachable"
        ) from None
    if response.status_code == 200:
        return response
    response.close()
    if response.status_code >= 500:
        raise TransientJobError(f"The source answered {response.status_code}.", code="source_failed")
    raise PermanentJobError(f"The source answered {response.status_code}.", code="source_refused")
