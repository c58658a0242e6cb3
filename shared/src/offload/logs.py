"""Structured logging: one JSON object per line, with the job id and tenant on every line about a job.

``configure_logging`` runs once per process at its composition root. The job fields come from a
context variable that the worker runtime sets around each job, so plain ``logger.info(...)`` calls
in handlers carry them without passing anything around.
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

#: The job the current thread (or greenlet) is working on, if any.
job_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("offload_job", default=None)

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


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
        line = (
            f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.name}: {prefix}{record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Format every root handler (adding one on stderr if there is none) and set the level.

    Keeps handlers a host process installed (Dramatiq's worker processes log through a pipe to
    their parent), changing only how lines look.
    """
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    for handler in root.handlers:
        handler.setFormatter(formatter)
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
