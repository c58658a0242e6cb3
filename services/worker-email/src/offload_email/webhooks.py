"""Calling clients back: the ``webhook.deliver`` handler (the notifications side of this worker).

A delivery POSTs an envelope around the finished job's record, ``{"type": "job.<state>",
"timestamp": <ISO 8601>, "data": <the record>}`` as JSON, signed per Standard Webhooks with the
tenant's secret(s); the API's document describes it (``offload_api.openapi_webhooks``).
``webhook-id`` is the delivery job's id, the same on every retry, so receivers can drop
duplicates. Redirects are never followed. 2xx ends it; 408, 429 (honouring ``Retry-After``), 5xx,
timeouts and refused connections retry with backoff; any other answer fails it at once, and a 410
Gone also disables the endpoint (Standard Webhooks): later deliveries to that URL fail at once
(``endpoint_disabled``) without a request, for :data:`GONE_TTL`. When the retries run out the
delivery is ``dead``. At most :data:`MAX_BODY` bytes of an answer are read; the rest is dropped
with the connection, so a receiver answering gigabytes costs no memory. The URL is vetted again
when connecting and the request goes to the vetted address (``offload.outbound``), so DNS cannot
be rebound in between. A receiver that keeps failing trips a per-host circuit breaker: its
deliveries wait instead of hammering it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests

from offload import tracing
from offload.contracts.webhook import DELIVER, DeliverWebhookPayload, DeliverWebhookResult
from offload.errors import PermanentJobError, TransientJobError, ValidationFailed
from offload.jobs import served_by
from offload.numbers import whole_number
from offload.outbound import pinned_request
from offload.status import StatusStore, iso, now_ms
from offload.status.breaker import CircuitBreaker
from offload.status.effects import Effects
from offload.status.secrets import SecretStore
from offload.tracing import SpanKind
from offload.urls import UrlPolicy
from offload.webhooks import sign
from offload.worker import JobContext

logger = logging.getLogger(__name__)

#: Seconds to connect, and to wait for the receiver's answer.
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
USER_AGENT = "Offload-Webhooks/1"
#: Most bytes of a receiver's answer read (the body is not used; reading a small one keeps the
#: connection reusable).
MAX_BODY = 64 * 1024
#: Seconds an endpoint that answered 410 Gone stays disabled.
GONE_TTL = 7 * 86_400


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    seconds = whole_number(value.strip(), max_digits=9)
    if seconds is not None:
        return float(seconds)
    try:
        from email.utils import parsedate_to_datetime

        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def post_streamed(
    session: requests.Session,
    policy: UrlPolicy,
    url: str,
    field_name: str,
    body: bytes,
    headers: dict[str, str],
    read_timeout: float,
) -> requests.Response:
    """POST ``body`` to ``url`` on the SSRF guard's pinned connection, the answer streamed, not read.

    The one way this worker calls a receiver (webhooks, push services): the URL is vetted again as
    it connects (``offload.outbound``), and a receiver answering gigabytes costs no memory.

    Raises:
        ValidationFailed: the URL is not allowed (any more), naming ``field_name``.
        requests.RequestException: the request failed or timed out.
    """
    return pinned_request(
        "POST",
        url,
        policy=policy,
        session=session,
        field_name=field_name,
        data=body,
        headers=headers,
        timeout=(CONNECT_TIMEOUT, read_timeout),
        stream=True,
    )


@dataclass(frozen=True)
class WebhookHandlers:
    """Entry point for the ``webhooks`` queue."""

    store: StatusStore
    secrets: SecretStore
    url_policy: UrlPolicy
    session: requests.Session
    breaker: CircuitBreaker | None = None
    read_timeout: float = READ_TIMEOUT

    def deliver(self, ctx: JobContext, payload: DeliverWebhookPayload) -> DeliverWebhookResult:
        """POST the job's final record to its callback URL, signed.

        Raises:
            PermanentJobError: the job is gone, the URL is not allowed, or the receiver refused it.
            TransientJobError: the receiver failed, throttled or could not be reached (retried).
        """
        record = self.store.queries.get(payload.job_id)
        if record is None:
            raise PermanentJobError("The job expired before its webhook was delivered.", code="job_gone")
        event = {"type": f"job.{record.state.value}", "timestamp": iso(now_ms()), "data": record.public()}
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {
            **sign(self.secrets.active(record.tenant), ctx.job_id, body),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        if Effects(self.store).endpoint_gone(record.tenant, payload.url):
            raise PermanentJobError(
                "The receiver answered 410 Gone before; this endpoint is disabled.", code="endpoint_disabled"
            )
        host = urlsplit(payload.url).netloc.rpartition("@")[2]
        troubled = self.breaker.check(host) if self.breaker is not None else False
        with tracing.span("offload.webhook.send", kind=SpanKind.CLIENT, attributes=_send_attributes(host)) as sent:
            tracing.inject_headers(headers)  # the receiver may continue the job's trace
            try:
                response = post_streamed(
                    self.session, self.url_policy, payload.url, "callback_url", body, headers, self.read_timeout
                )
            except ValidationFailed as exc:  # vetted again at connect time: DNS may have changed since submission
                raise PermanentJobError(exc.message, code=exc.code) from None
            except requests.Timeout:
                self._failed(host)
                raise TransientJobError("The receiver did not answer in time.", code="webhook_timeout") from None
            except requests.RequestException as exc:
                self._failed(host)
                reason = f"Could not reach the receiver: {type(exc).__name__}."
                raise TransientJobError(reason, code="webhook_unreachable") from None
            if sent is not None:
                sent.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 500 or response.status_code in (408, 429):
            self._failed(host)
        elif troubled and self.breaker is not None:
            self.breaker.success(host)
        if response.status_code == 410:
            Effects(self.store).flag_endpoint_gone(record.tenant, payload.url, ttl_s=GONE_TTL)
            logger.warning("The receiver of job %s answered 410 Gone; its endpoint is disabled.", payload.job_id)
        return self._outcome(response, ctx.job_id)

    def _failed(self, host: str) -> None:
        if self.breaker is not None and self.breaker.failure(host):
            logger.warning("Webhooks to %s are paused: it failed repeatedly.", host)

    @staticmethod
    def _outcome(response: requests.Response, webhook_id: str) -> DeliverWebhookResult:
        status = response.status_code
        try:
            read = 0
            for chunk in response.iter_content(16 * 1024):
                read += len(chunk)
                if read >= MAX_BODY:
                    break  # the rest is dropped with the connection
        except (requests.RequestException, OSError):
            pass  # the answer's status is what counts
        finally:
            response.close()
        if 200 <= status < 300:
            return DeliverWebhookResult(status=status, webhook_id=webhook_id)
        if status in (408, 429):
            raise TransientJobError(
                f"The receiver answered {status}.",
                code="webhook_throttled",
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        if status >= 500:
            raise TransientJobError(f"The receiver answered {status}.", code="webhook_failed")
        if 300 <= status < 400:
            reason = f"The receiver answered {status}; redirects are not followed."
            raise PermanentJobError(reason, code="webhook_redirect")
        raise PermanentJobError(f"The receiver refused the webhook with {status}.", code="webhook_rejected")


def _send_attributes(host: str) -> dict[str, str | int | float | bool]:
    """What the webhook send span says about its request (the URL's host only, never its path or query)."""
    return {"http.request.method": "POST", "server.address": host}


#: The job types these handlers serve, each bound to its contract.
deliver = served_by(WebhookHandlers, WebhookHandlers.deliver, DELIVER)
