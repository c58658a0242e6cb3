"""What is due: delayed jobs and retries to promote, and finished jobs whose webhook is to be queued."""

from __future__ import annotations

import logging

from offload.status.facet import Facet
from offload.status.scripts import named, now_ms, redis_errors
from offload.status.shapes import (
    Claim,
    Ending,
)
from offload.wire import stored_message

logger = logging.getLogger(__name__)


class Timers(Facet):
    """What is due: delayed jobs and retries to promote, and finished jobs whose webhook is to be queued.

    Claims are leases: a claimer that dies leaves them to be claimed again when the lease runs out.
    """

    def claim_due(self, *, limit: int = 100, lease_ms: int = 30_000) -> Claim:
        """Claim delayed or backed-off jobs that are due (delayed ones become ``queued``).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        reply = named(self._run("claim_due", "", limit, lease_ms))
        due = [(values[0], stored_message(values)) for values in reply["due"]]
        return Claim(int(reply["lease"]), due, list(reply["lost"]))

    def promoted(self, job_id: str, lease: int) -> bool:
        """Release the lease of a claimed job whose message was published and confirmed.

        Only the claim's own entry is removed: if the job already ran and was scheduled again
        (a retry), that new entry stays.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        return bool(self._run("promoted", job_id, lease, self.keys.suffix(self.keys.scheduled)))

    def claim_outbox(self, *, limit: int = 100, lease_ms: int = 30_000) -> tuple[int, list[Ending]]:
        """Claim finished jobs whose webhook is still to be queued; returns the lease and the jobs.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        reply = named(self._run("claim_outbox", "", limit, lease_ms))
        endings = [named(ending) for ending in reply["endings"]]
        return int(reply["lease"]), [
            Ending(e["job_id"], e["tenant"], e["url"], int(e["seq"]), e.get("traceparent", ""), e.get("tracestate", ""))
            for e in endings
        ]

    def outbox_done(self, job_id: str, lease: int) -> bool:
        """Release the outbox claim of a job whose webhook job was queued.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        return bool(self._run("promoted", job_id, lease, self.keys.suffix(self.keys.outbox)))

    def release(self, job_id: str, lease: int, *, retry_in_ms: int = 1000) -> None:
        """Give back a claim whose publish failed, to be claimed again in ``retry_in_ms`` (not after the lease).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            if self.client.zscore(self.keys.scheduled, job_id) == lease:
                self.client.zadd(self.keys.scheduled, {job_id: now_ms() + retry_in_ms}, xx=True)

    def next_due(self) -> float | None:
        """Milliseconds timestamp of the earliest scheduled job, or None.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            first = self.client.zrange(self.keys.scheduled, 0, 0, withscores=True)
        return float(first[0][1]) if first else None
