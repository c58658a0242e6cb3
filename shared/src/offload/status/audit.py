"""The audit log of admin actions: who did what to what, with what outcome, when and from where.

One Redis stream (``audit``); each entry's id is its time. An entry is appended by the action
itself (the API's admin routes, the admin page, ``offload keys``), and the stream is trimmed on
every append by age (``OFFLOAD_AUDIT_RETENTION``) and by length (``OFFLOAD_AUDIT_MAX_ENTRIES``),
both approximately (``~``), so a trim never holds Redis long. Read newest first, a page at a time
(``GET /v1/audit``, the admin page), and whole since a moment (``maintenance.cleanup`` exports it
with the dead letters).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, cast

from offload.status.records import iso
from offload.status.scripts import now_ms, redis_errors

if TYPE_CHECKING:
    from offload.status.store import StatusStore

#: Most entries a page holds.
MAX_PAGE = 200
#: Most entries one page's read looks at when a filter skips most of them.
MAX_SCANNED = 5_000
#: Longest value of any field (a target, an outcome): longer ones are cut.
MAX_FIELD = 300


@dataclass(frozen=True)
class AuditEntry:
    """One admin action.

    Args:
        actor: who: ``key <id> (<name>)``, ``env key``, ``admin page (key ...)``, ``cli``.
        action: what, a dotted name (``key.create``, ``queue.pause``, ``admin.sign_in``).
        target: what it was done to (a key id, a queue, a job id), or empty.
        outcome: ``ok``, or why not (``failed: ...``, ``not_found``).
        address: the client address it came from (``cli`` for the command line).
        at: when (ms), set when it is recorded.
        id: its stream id, set when it is read.
    """

    actor: str
    action: str
    target: str
    outcome: str
    address: str
    at: int = 0
    id: str = ""

    def public(self) -> dict[str, str | None]:
        """The entry as the API and the export show it."""
        return {**{name: str(value) for name, value in asdict(self).items()}, "at": iso(self.at)}


class AuditLog:
    """The audit stream, appended to with trimming and read newest first.

    Args:
        store: the status store whose Redis client and key names it uses.
        retention: seconds an entry is kept.
        max_entries: most entries kept.
    """

    def __init__(self, store: StatusStore, *, retention: int, max_entries: int) -> None:
        self.client = store.client
        self.key = store.keys.audit
        self.exported_key = store.keys.audit_exported
        self.retention = retention
        self.max_entries = max_entries

    def record(self, entry: AuditEntry) -> str:
        """Append ``entry`` (its time is now) and trim what is too old or too many; returns its id.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        now = now_ms()
        fields = {name: str(value)[:MAX_FIELD] for name, value in asdict(entry).items() if name not in ("at", "id")}
        with redis_errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.xadd(self.key, fields, id=f"{now}-*", maxlen=self.max_entries, approximate=True)  # type: ignore[arg-type]
            pipe.xtrim(self.key, minid=str(now - self.retention * 1000), approximate=True)
            added, _ = pipe.execute()
        return str(added)

    def page(
        self, *, action: str | None = None, since: int | None = None, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[AuditEntry], str | None]:
        """Up to ``limit`` entries, newest first, of ``action`` (ending in ``.``: a prefix), since ``since`` (ms).

        Returns the entries and the cursor of the next page (None: no more). A page may hold fewer
        than ``limit`` while a cursor is given, when a filter skipped :data:`MAX_SCANNED` entries.

        Raises:
            ValueError: ``cursor`` is not a stream id.
            StatusStoreUnavailable: Redis is unavailable.
        """
        limit = max(1, min(limit, MAX_PAGE))
        upper = "+" if cursor is None else f"({_stream_id(cursor)}"
        lower = f"{since}-0" if since else "-"
        found: list[AuditEntry] = []
        scanned, last = 0, None
        with redis_errors():
            while len(found) < limit and scanned < MAX_SCANNED:
                rows = cast(list[tuple[str, dict[str, str]]], self.client.xrevrange(self.key, upper, lower, count=100))
                if not rows:
                    return found, None
                for entry_id, fields in rows:
                    scanned, last = scanned + 1, entry_id
                    if _wanted(fields.get("action", ""), action):
                        found.append(_entry(entry_id, fields))
                        if len(found) == limit:
                            break
                upper = f"({last}"
                if len(rows) < 100 and len(found) < limit:
                    return found, None
        return found, last

    def unexported(self) -> list[AuditEntry]:
        """Every entry after the last one :meth:`mark_exported` marked, oldest first.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            mark = cast(str | None, self.client.get(self.exported_key))
        return list(self._after(f"({mark}" if mark else "-"))

    def mark_exported(self, entry_id: str) -> None:
        """Note ``entry_id`` as the last entry exported (after its export was written: at least once).

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        with redis_errors():
            self.client.set(self.exported_key, entry_id)

    def since(self, moment: int) -> Iterator[AuditEntry]:
        """Every entry at or after ``moment`` (ms), oldest first, read 500 at a time.

        Raises:
            StatusStoreUnavailable: Redis is unavailable.
        """
        return self._after(f"{moment}-0")

    def _after(self, lower: str) -> Iterator[AuditEntry]:
        while True:
            with redis_errors():
                rows = cast(list[tuple[str, dict[str, str]]], self.client.xrange(self.key, lower, "+", count=500))
            for entry_id, fields in rows:
                yield _entry(entry_id, fields)
            if len(rows) < 500:
                return
            lower = f"({rows[-1][0]}"


def _wanted(action: str, wanted: str | None) -> bool:
    if wanted is None:
        return True
    return action.startswith(wanted) if wanted.endswith(".") else action == wanted


def _stream_id(cursor: str) -> str:
    left, sep, right = cursor.partition("-")
    if not (left.isdigit() and sep and right.isdigit() and len(cursor) <= 40):
        raise ValueError("not a cursor of the audit log")
    return cursor


def _entry(entry_id: str, fields: dict[str, str]) -> AuditEntry:
    return AuditEntry(
        actor=fields.get("actor", ""),
        action=fields.get("action", ""),
        target=fields.get("target", ""),
        outcome=fields.get("outcome", ""),
        address=fields.get("address", ""),
        at=int(entry_id.partition("-")[0]),
        id=entry_id,
    )
