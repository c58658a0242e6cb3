"""Which jobs a listing or a bulk operation takes: one filter, read by :meth:`Queries.list_jobs`.

The tenant, type and state choose the indexes walked (exact, bounded by the catalogue), or an
error code its error index (a job is listed there by when its error was recorded, written by the
Lua script of the transition that recorded it); an ended-between range is a range of their scores
(an ended job is scored by the time it ended); whatever the index does not decide (the
created-between range, the type or state beside an error code or a tag) is checked on each record read.
A tag's index (scored by when each job could first run) is walked whole; a new criterion is one more
field here and one more test in :meth:`JobFilter.matches`.
"""

from __future__ import annotations

from dataclasses import dataclass

from offload.status.records import JobRecord
from offload.status.states import JobState


@dataclass(frozen=True)
class JobFilter:
    """Jobs meeting every criterion given; times are milliseconds since the epoch, ranges ``[from, to)``."""

    #: One tenant's jobs; None for every tenant's (admins).
    tenant: str | None = None
    state: JobState | None = None
    job_type: str | None = None
    error_code: str | None = None
    #: Jobs carrying this tag (their tag's index is walked instead of the state indexes).
    tag: str | None = None
    created_from: int | None = None
    created_to: int | None = None
    finished_from: int | None = None
    finished_to: int | None = None

    @property
    def states(self) -> list[JobState]:
        """The states whose indexes can hold a match (an end time narrows them to the ended ones)."""
        if self.state is not None:
            return [self.state]
        if self.finished_from is not None or self.finished_to is not None:
            return [state for state in JobState if state.terminal]
        return list(JobState)

    @property
    def scores(self) -> tuple[int | str, int | str]:
        """The index scores that can hold a match, as ``ZRANGEBYSCORE`` bounds (min, max).

        Only an ended-between range narrows them, and only when every state walked has ended
        (a job in a terminal state is scored by its end) and no error or tag index is walked (scored
        by the error, which a retrying job has before it ends, or by creation); otherwise they are the whole range.
        """
        if self.error_code is not None or self.tag is not None or not all(state.terminal for state in self.states):
            return "-inf", "+inf"
        low = self.finished_from if self.finished_from is not None else "-inf"
        high = f"({self.finished_to}" if self.finished_to is not None else "+inf"
        return low, high

    def matches(self, record: JobRecord) -> bool:
        """Whether ``record`` meets every criterion (the index it was found in may be stale)."""
        checks = (
            self.tenant is None or record.tenant == self.tenant,
            self.state is None or record.state is self.state,
            self.job_type is None or record.type == self.job_type,
            self.error_code is None or record.error_code == self.error_code,
            self.tag is None or self.tag in record.tags,
            _within(record.created_at, self.created_from, self.created_to),
            _within(record.finished_at, self.finished_from, self.finished_to),
        )
        return all(checks)


def _within(moment: int | None, start: int | None, end: int | None) -> bool:
    if start is None and end is None:
        return True
    if moment is None:
        return False
    return (start is None or moment >= start) and (end is None or moment < end)
