"""Web push: the ``push.send`` handler (the notifications side of this worker, in a process of its own).

For each subscription of the users named, the message (``SendPushPayload.message()``, JSON) is
encrypted for that browser (RFC 8291 ``aes128gcm``, by ``pywebpush``/``http-ece``) and POSTed to
its push service with a VAPID ``Authorization`` (RFC 8292, signed by ``py-vapid``) and the
``TTL``, ``Urgency`` and ``Topic`` headers (RFC 8030). The endpoint is vetted again by the SSRF
guard and the request goes to the vetted address (``offload.outbound``).

Each subscription's outcome is journalled in Redis (``effect:push:<job>``, a hash) and a
"sending" entry is written just before its request: a redelivered or retried job sends nothing
twice. A push service answering 201 (any 2xx) took it (``sent``); 404 or 410 means the browser
unsubscribed (``gone``: the subscription is removed); another 4xx is ``rejected``. 429, 5xx,
timeouts and refused connections retry the job with backoff, honouring ``Retry-After``; on the
last attempt whatever still fails is reported ``failed`` in the result instead. Sends to one push
service host share a rate limit through Redis (``OFFLOAD_PUSH_RATE_PER_SECOND``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Generator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from py_vapid import Vapid02
from pywebpush import WebPusher

from offload.contracts.push import SEND, PushOutcome, SendPushPayload, SendPushResult, subscription_info
from offload.errors import PermanentJobError, TransientJobError, ValidationFailed
from offload.jobs import served_by
from offload.status import StatusStore
from offload.status.effects import Effects
from offload.status.push import PushSubscriptions, Subscription
from offload.status.rates import SendRate
from offload.urls import UrlPolicy
from offload.worker import JobContext
from offload_email.webhooks import post_streamed, retry_after_seconds

logger = logging.getLogger(__name__)

#: Lifetime of a VAPID token (RFC 8292 §2: at most 24 hours); one is reused per push service for
#: :data:`TOKEN_REUSE` seconds, so a burst to one service signs once.
TOKEN_LIFETIME = 12 * 3600
TOKEN_REUSE = 3600
#: The journal's kind: ``effect:push:<job id>``.
JOURNAL = "push"
USER_AGENT = "Offload-Push/1"


@dataclass
class _Tokens:
    """VAPID ``Authorization`` headers per push service origin, each reused for a while."""

    vapid: Vapid02
    subject: str
    cache: dict[str, tuple[float, str]] = field(default_factory=dict)

    def header(self, origin: str) -> str:
        now = time.time()
        cached = self.cache.get(origin)
        if cached is not None and cached[0] > now:
            return cached[1]
        claims = {"aud": origin, "sub": self.subject, "exp": int(now) + TOKEN_LIFETIME}
        value = str(self.vapid.sign(claims)["Authorization"])
        self.cache[origin] = (now + TOKEN_REUSE, value)
        return value


@dataclass
class PushHandlers:
    """Entry point for the ``push`` queue.

    Args:
        store: the status store (journal, subscriptions).
        url_policy: the SSRF guard's policy for endpoints.
        session: the HTTP session requests go through.
        private_key: the VAPID private key (empty: push.send fails ``push_not_configured``).
        subject: the VAPID ``sub`` claim (``mailto:`` or ``https:``).
        rate_per_second: messages per second to one push service host, shared (0: no limit).
        read_timeout: seconds a push service has to answer.
        retention_s: how long a job's journal is kept.
        concurrency: requests one job has in flight at once (each subscription is one request).
    """

    store: StatusStore
    url_policy: UrlPolicy
    session: requests.Session
    private_key: str
    subject: str
    rate_per_second: int = 0
    read_timeout: float = 10.0
    retention_s: int = 7 * 86_400
    concurrency: int = 4
    _tokens: _Tokens | None = field(default=None, init=False)
    _rates: dict[str, SendRate] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.private_key:
            self._tokens = _Tokens(Vapid02.from_raw(self.private_key.encode()), self.subject)

    def send(self, ctx: JobContext, payload: SendPushPayload) -> SendPushResult:
        """Notify every subscription of the payload's users, each at most once per job, a few at a time.

        Raises:
            JobCancelled: a client cancelled the job (no request starts after it; those in flight end).
            PermanentJobError: no VAPID key is configured (``push_not_configured``).
            TransientJobError: a push service failed, throttled or could not be reached (retried).
        """
        if self._tokens is None:
            raise PermanentJobError(
                "This deployment has no VAPID key (OFFLOAD_VAPID_PRIVATE_KEY).", code="push_not_configured"
            )
        subscriptions = PushSubscriptions(self.store)
        effects = Effects(self.store)
        done = {
            sub_id: PushOutcome.model_validate_json(entry)
            for sub_id, entry in effects.journal(JOURNAL, ctx.job_id).items()
        }
        message = payload.message()
        targets = {sub.id: sub for user in payload.users() for sub in subscriptions.of_user(ctx.tenant, user)}
        # An earlier attempt (or delivery) of this job got this far; and subscriptions it found gone
        # (and removed) keep their outcome.
        outcomes = [done[sub_id] for sub_id in targets if sub_id in done]
        outcomes += [outcome for sub_id, outcome in done.items() if sub_id not in targets]
        pending = [sub for sub in targets.values() if sub.id not in done]
        retry: list[_Later] = []

        def serve(sub: Subscription) -> PushOutcome | _Later:
            """Send to one subscription and record its outcome (in a thread of the job's own pool)."""
            outcome = self._send_one(ctx.job_id, sub, message, payload, effects)
            if isinstance(outcome, _Later):
                effects.erase(JOURNAL, ctx.job_id, sub.id)  # not taken: send it again on the next attempt
                return outcome
            effects.write(JOURNAL, ctx.job_id, {sub.id: outcome.model_dump_json()}, ttl_s=self.retention_s)
            if outcome.status == "gone":
                subscriptions.remove(ctx.tenant, sub.id)
            return outcome

        with contextlib.closing(self._each(pending, serve)) as each:  # stopping early ends those in flight
            for ended, outcome in enumerate(each, start=1):
                if isinstance(outcome, _Later):
                    if outcome.code == "push_rate_limited" and not ctx.last_attempt:  # nothing sent: wait
                        raise TransientJobError(outcome.outcome.detail or "", code=outcome.code)
                    retry.append(outcome)
                else:
                    outcomes.append(outcome)
                # Progress for whoever follows the job; a cancel stops it here (what was sent is journalled).
                ctx.progress(100 * ended / len(pending), f"{ended}/{len(pending)} subscriptions")
        if retry and not ctx.last_attempt:
            waits = [again.retry_after for again in retry if again.retry_after is not None]
            raise TransientJobError(
                f"{len(retry)} of {len(targets)} subscription(s) could not be notified yet: {retry[0].outcome.detail}",
                code=retry[0].code,
                retry_after=max(waits) if waits else None,
            )
        outcomes += [again.outcome for again in retry]
        # One order whatever finished first or was removed since (a redelivery returns the same result):
        # the users as given, each user's subscriptions by id.
        user_order = {user: index for index, user in enumerate(payload.users())}
        outcomes.sort(key=lambda o: (user_order.get(o.user_id, len(user_order)), o.subscription_id))
        count = {status: sum(o.status == status for o in outcomes) for status in ("sent", "gone", "rejected", "failed")}
        return SendPushResult(**count, subscriptions=outcomes)

    def _each(
        self, pending: list[Subscription], serve: Callable[[Subscription], PushOutcome | _Later]
    ) -> Generator[PushOutcome | _Later, None, None]:
        """Each subscription's outcome as it ends, at most :attr:`concurrency` requests in flight.

        When the caller stops early (a cancel, a saturated rate), no new request starts and those
        in flight end, and record their outcome, before this returns.
        """
        if self.concurrency <= 1 or len(pending) <= 1:
            yield from (serve(sub) for sub in pending)
            return
        queue = iter(pending)
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="push") as pool:
            running = {pool.submit(serve, sub) for sub in itertools.islice(queue, self.concurrency)}
            while running:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    following = next(queue, None)
                    if following is not None:
                        running.add(pool.submit(serve, following))
                    yield future.result()

    def _send_one(
        self, job_id: str, sub: Subscription, message: bytes, payload: SendPushPayload, effects: Effects
    ) -> PushOutcome | _Later:
        """POST the message to one subscription: its outcome, or :class:`_Later` to try it again later."""
        assert self._tokens is not None
        parts = urlsplit(sub.endpoint)
        origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        rate = self._rate(parts.hostname or "")
        failed = PushOutcome(subscription_id=sub.id, user_id=sub.user_id, status="failed")
        if rate is not None:
            try:
                rate.wait()
            except TransientJobError as exc:
                return _Later(failed.model_copy(update={"detail": exc.message}), exc.code)
        body = WebPusher(subscription_info(sub.endpoint, {"p256dh": sub.p256dh, "auth": sub.auth})).encode(message)[
            "body"
        ]
        headers = {
            "Authorization": self._tokens.header(origin),
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "TTL": str(payload.ttl),
            "Urgency": payload.urgency,
            "User-Agent": USER_AGENT,
        }
        if payload.topic:
            headers["Topic"] = payload.topic
        unconfirmed = PushOutcome(
            subscription_id=sub.id,
            user_id=sub.user_id,
            status="sent",
            detail="Unconfirmed: the worker stopped while sending this message; not sent again.",
        )
        # Written before the request: if the worker dies now, a redelivery will not send it twice.
        effects.write(JOURNAL, job_id, {sub.id: unconfirmed.model_dump_json()}, ttl_s=self.retention_s)
        try:
            # the answer's body is never read: a push service cannot make us hold one
            response = post_streamed(
                self.session, self.url_policy, sub.endpoint, "endpoint", body, headers, self.read_timeout
            )
        except ValidationFailed as exc:  # vetted again at connect time: DNS may have changed since
            return failed.model_copy(update={"detail": exc.message})
        except requests.Timeout:
            detail = "The push service did not answer in time."
            return _Later(failed.model_copy(update={"detail": detail}), "push_timeout")
        except requests.RequestException as exc:
            detail = f"Could not reach the push service: {type(exc).__name__}."
            return _Later(failed.model_copy(update={"detail": detail}), "push_unreachable")
        status = response.status_code
        response.close()
        if 200 <= status < 300:
            return PushOutcome(subscription_id=sub.id, user_id=sub.user_id, status="sent", http_status=status)
        if status in (404, 410):
            logger.info("Push subscription %s of job %s is gone (%d); removing it.", sub.id, job_id, status)
            return PushOutcome(
                subscription_id=sub.id,
                user_id=sub.user_id,
                status="gone",
                http_status=status,
                detail="The browser unsubscribed; the subscription was removed.",
            )
        if status == 429 or status >= 500:
            return _Later(
                failed.model_copy(update={"http_status": status, "detail": f"The push service answered {status}."}),
                "push_throttled" if status == 429 else "push_service_failed",
                retry_after_seconds(response.headers.get("Retry-After")),
            )
        return PushOutcome(
            subscription_id=sub.id,
            user_id=sub.user_id,
            status="rejected",
            http_status=status,
            detail=f"The push service refused the message with {status}.",
        )

    def _rate(self, host: str) -> SendRate | None:
        if not self.rate_per_second:
            return None
        found = self._rates.get(host)
        if found is None:
            found = SendRate(
                self.store,
                f"push:{host}",
                per_second=self.rate_per_second,
                code="push_rate_limited",
                what=f"The send rate to push service {host}",
            )
            self._rates[host] = found
        return found


@dataclass(frozen=True)
class _Later:
    """A subscription worth trying again on the next attempt: its outcome if it never succeeds, and why."""

    outcome: PushOutcome
    code: str
    retry_after: float | None = None


#: The job types these handlers serve, each bound to its contract.
send = served_by(PushHandlers, PushHandlers.send, SEND)
