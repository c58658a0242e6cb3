"""Structured logging: one JSON object per line, with the job id and tenant on every line about a job.

While tracing is on (``offload.tracing``), a line written inside a span (an API request's, a job's)
carries its ``trace_id`` too.

``configure_logging`` runs once per process at its composition root. The job fields come from a
context variable that the worker runtime sets around each job, so plain ``logger.info(...)`` calls
in handlers carry them without passing anything around. No line carries a job's payload
(:class:`NoPayloads`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dramatiq import Message
from dramatiq.broker import MessageProxy

from offload import tracing

#: The job the current thread (or greenlet) is working on, if any.
job_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("offload_job", default=None)

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class NoPayloads(logging.Filter):
    """Show each Dramatiq message a log record carries as its job type, id and tenant, never its payload.

    Dramatiq logs the message itself (``%s``: the actor name and every argument, so the whole
    payload) when a job fails ("Failed to process message ... with expected exception", at INFO),
    is skipped, or arrives (DEBUG); a payload holds what tenants send: addresses, reset links,
    anything (issue 29, item 8). At DEBUG the payload's shape is added: its fields with the type
    and size of each value, never a value.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the messages among ``record``'s arguments with their descriptions; keep the record."""
        if isinstance(record.args, tuple) and any(isinstance(arg, Message | MessageProxy) for arg in record.args):
            debug = record.levelno <= logging.DEBUG
            record.args = tuple(
                describe_message(arg, shape=debug) if isinstance(arg, Message | MessageProxy) else arg
                for arg in record.args
            )
        return True


def describe_message(message: Message[Any] | MessageProxy, *, shape: bool = False) -> str:
    """``type(job <id>, tenant <tenant>)``, and with ``shape`` the payload's fields as ``name: type size``."""
    block = message.options.get("offload")
    tenant = block.get("tenant") if isinstance(block, dict) else None
    text = f"{message.actor_name}(job {message.message_id}, tenant {tenant if isinstance(tenant, str) else '?'})"
    payload = message.kwargs.get("payload") if isinstance(message.kwargs, dict) else None
    if shape and isinstance(payload, dict):
        fields = ", ".join(f"{str(name)[:64]}: {_shape(value)}" for name, value in payload.items())
        text += f" payload {{{fields}}}"
    return text


def _shape(value: object) -> str:
    """A value's type and size, never its content: ``str 12``, ``list 3``, ``dict 2``, ``int``."""
    size = f" {len(value)}" if isinstance(value, str | list | dict) else ""
    return f"{type(value).__name__}{size}"


class JsonFormatter(logging.Formatter):
    """Format records as JSON lines: time, level, logger, message, job fields, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object for ``record``."""
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(job_context.get() or {})
        if tracing.enabled() and "trace_id" not in entry:  # the API request's or job's trace (docs/tracing.md)
            trace_id = tracing.current_trace_id()
            if trace_id:
                entry["trace_id"] = trace_id
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-friendly lines for a terminal, with the job id when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """One readable line (plus the traceback, if any) for ``record``."""
        job = job_context.get()
        prefix = f"[{job['job_id'][:8]} {job.get('tenant', '')}] " if job else ""
        trace_id = (job or {}).get("trace_id") or tracing.current_trace_id()  # None at once while tracing is off
        if trace_id:
            prefix += f"[trace {trace_id}] "
        line = (
            f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.name}: {prefix}{record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Format every root handler (adding one on stderr if there is none) and set the level.

    Keeps handlers a host process installed (Dramatiq's worker processes log through a pipe to
    their parent), changing only how lines look and that they carry no payload (:class:`NoPayloads`).
    """
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    for handler in root.handlers:
        handler.setFormatter(formatter)
        if not any(isinstance(f, NoPayloads) for f in handler.filters):
            handler.addFilter(NoPayloads())
    root.setLevel(level)
    logging.getLogger("pika").setLevel(logging.WARNING)


@contextmanager
def job_logging(**fields: str) -> Iterator[None]:
    """Attach ``fields`` (job_id, tenant, job_type, attempt) to every log line inside the block."""
    token = job_context.set({k: v for k, v in fields.items() if v})
    try:
        yield
    finally:
        job_context.reset(token)
