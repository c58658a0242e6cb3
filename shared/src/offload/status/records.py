"""The job record as read back from the status store, and its public JSON form."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from offload.status.states import JobState


def iso(ms: int | None) -> str | None:
    """Milliseconds since the epoch as an ISO 8601 UTC timestamp, or ``None``."""
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


def _json(value: str | None) -> Any:
    return json.loads(value) if value else None


@dataclass(frozen=True)
class JobRecord:
    """One job's state, progress, result and bookkeeping, as stored in Redis."""

    id: str
    type: str
    tenant: str
    queue: str
    state: JobState
    priority: str
    attempts: int
    max_retries: int
    progress: int
    progress_message: str | None
    result: Any
    error_code: str | None
    error_message: str | None
    #: The field problems of a refusal (a wire job refused at adoption), as a 422 lists them.
    error_fields: list[dict[str, Any]] | None
    cancel_requested: bool
    created_at: int
    scheduled_for: int | None
    started_at: int | None
    finished_at: int | None
    updated_at: int | None
    seq: int
    batch_id: str | None
    parent_id: str | None
    callback_url: str | None
    #: The flow the job is a node of (``offload.flows``), and its node's name there.
    flow_id: str | None
    flow_node: str | None
    payload: Any
    follow_ups: list[dict[str, Any]]
    tags: list[str]
    metadata: dict[str, str]
    #: The W3C ``traceparent`` the job was published with (docs/tracing.md); None while tracing was off.
    traceparent: str | None = None

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> JobRecord:
        """Build a record from the Redis hash (all values strings) and its ``id``."""
        payload = _json(raw["payload"]) if raw.get("payload") else _payload_of_message(raw.get("message"))
        return cls(
            id=raw["id"],
            type=raw.get("type", ""),
            tenant=raw.get("tenant", ""),
            queue=raw.get("queue", ""),
            state=JobState(raw.get("state", "queued")),
            priority=raw.get("priority", "normal"),
            attempts=int(raw.get("attempts") or 0),
            max_retries=int(raw.get("max_retries") or 0),
            progress=int(float(raw.get("progress") or 0)),
            progress_message=raw.get("progress_message") or None,
            result=_json(raw.get("result")),
            error_code=raw.get("error_code") or None,
            error_message=raw.get("error_message") or None,
            error_fields=_json(raw.get("error_fields")),
            cancel_requested=raw.get("cancel_requested") == "1",
            created_at=int(raw.get("created_at") or 0),
            scheduled_for=_int(raw.get("scheduled_for")),
            started_at=_int(raw.get("started_at")),
            finished_at=_int(raw.get("finished_at")),
            updated_at=_int(raw.get("updated_at")),
            seq=int(raw.get("seq") or 0),
            batch_id=raw.get("batch_id") or None,
            parent_id=raw.get("parent_id") or None,
            callback_url=raw.get("callback_url") or None,
            flow_id=raw.get("flow_id") or None,
            flow_node=raw.get("flow_node") or None,
            payload=payload,
            follow_ups=_json(raw.get("then")) or [],
            tags=_json(raw.get("tags")) or [],
            metadata=_json(raw.get("metadata")) or {},
            traceparent=raw.get("traceparent") or None,
        )

    def public(self) -> dict[str, Any]:
        """The JSON shape clients see (``GET /v1/jobs/{id}``, SDK, events)."""
        return {
            "id": self.id,
            "type": self.type,
            "state": self.state.value,
            "progress": {"percent": self.progress, "message": self.progress_message},
            "result": self.result,
            "error": self._error(),
            "attempts": self.attempts,
            "max_retries": self.max_retries,
            "priority": self.priority,
            "queue": self.queue,
            "tenant": self.tenant,
            "payload": self.payload,
            "cancel_requested": self.cancel_requested,
            "created_at": iso(self.created_at),
            "scheduled_for": iso(self.scheduled_for),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "updated_at": iso(self.updated_at),
            "batch_id": self.batch_id,
            "parent_id": self.parent_id,
            "callback_url": self.callback_url,
            "flow": {"id": self.flow_id, "node": self.flow_node} if self.flow_id else None,
            "then": [f["type"] for f in self.follow_ups],
            "webhook_id": self.webhook_id,
            "tags": self.tags,
            "metadata": self.metadata,
            "trace_id": self.trace_id,
            "seq": self.seq,
        }

    def _error(self) -> dict[str, Any] | None:
        if not self.error_code:
            return None
        error: dict[str, Any] = {"code": self.error_code, "message": self.error_message}
        if self.error_fields:
            error["errors"] = self.error_fields
        return error

    @property
    def trace_id(self) -> str | None:
        """The id of the job's trace (32 hex digits), read from its ``traceparent``; None without one."""
        parts = self.traceparent.split("-") if self.traceparent else []
        return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None

    @property
    def webhook_id(self) -> str | None:
        """The id of the ``webhook.deliver`` job calling this job's ``callback_url`` back, once it ended.

        Derived from the job and its terminal event (as the promoter derives it), so a client can
        follow the delivery's attempts with ``GET /v1/jobs/{webhook_id}``.
        """
        if not self.callback_url or not self.state.terminal:
            return None
        return str(uuid.uuid5(uuid.UUID(self.id), f"webhook/{self.seq}"))


def _payload_of_message(message: str | None) -> Any:
    """The payload inside a stored message (records of layout 1 kept the message, not the payload)."""
    decoded = _json(message) or {}
    return decoded.get("kwargs", {}).get("payload") if isinstance(decoded, dict) else None


def history_of(raw: dict[str, str]) -> list[dict[str, Any]]:
    """A job's state changes, oldest first, from its hash's ``h<seq>`` fields (``lua/_prelude.lua``).

    Each is the event as it was published: ``{seq, kind: "state", state, at, attempt, progress}``
    and whatever else it carried (``error``, ``retry_at``, ...).
    """
    events = []
    for name, value in raw.items():
        if not (name.startswith("h") and name[1:].isdigit()):
            continue
        state, at, attempt, progress, *extra = value.split("|", 4)
        event: dict[str, Any] = {
            "seq": int(name[1:]),
            "kind": "state",
            "state": state,
            "at": int(at),
            "attempt": int(attempt),
            "progress": int(float(progress)),
        }
        if extra:
            event.update(json.loads(extra[0]))
        events.append(event)
    events.sort(key=lambda event: int(event["seq"]))
    return events
