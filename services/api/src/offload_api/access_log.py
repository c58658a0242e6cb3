"""gunicorn's access log without browser tokens: a ``token=`` in a request's URL never reaches a log line.

The access log is off by default (``gunicorn_conf.accesslog``); an operator may turn it on
(``GUNICORN_CMD_ARGS="--access-logfile -"``). A browser token travels in the query string
(``?token=``, ``offload_api.browser``), so every value a log line can show (the request line
``%(r)s``, the query ``%(q)s``, environ values such as ``%({raw_uri}e)s``) has it replaced by
``[redacted]``. ``gunicorn_conf.logger_class`` names this class.
"""

from __future__ import annotations

import re
from typing import Any

from gunicorn import glogging

#: ``token=<value>`` in a query string or request line: what a log line must not show.
TOKEN_IN_QUERY = re.compile(r"(?<=[?&]token=)[^&\s\"]*|(?<=^token=)[^&\s\"]*")


def redact_token(text: str) -> str:
    """``text`` (a URL, a query string, a request line) with any ``token=`` value replaced by ``[redacted]``."""
    return TOKEN_IN_QUERY.sub("[redacted]", text) if "token=" in text else text


class RedactingLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's logger, with browser tokens redacted from every access log atom."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        """The atoms of one access log line, with any ``token=`` value redacted."""
        found: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        return {name: redact_token(value) if isinstance(value, str) else value for name, value in found.items()}
