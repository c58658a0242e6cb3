"""Turning an ``email.send`` payload into a MIME message: pure, no I/O besides reading templates.

Templates are Jinja2 files under ``templates/<name>/`` (``subject.txt``, ``body.txt``,
``body.html``). The HTML part is autoescaped; variables are data and are never evaluated as
templates, so ``{{7*7}}`` in a value arrives as written. A missing variable is an error, not an
empty string.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from importlib import resources
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, select_autoescape

from offload.contracts.email import LINE_BREAKS, LINK_SUFFIX, Recipient, SendEmailPayload
from offload.errors import PermanentJobError, ValidationFailed
from offload.urls import check_link


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The Jinja2 environment over the shipped templates (built once per process)."""
    folder = resources.files("offload_email") / "templates"
    return Environment(
        loader=FileSystemLoader(str(folder)),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def render_parts(template: str, variables: dict[str, Any]) -> tuple[str, str, str]:
    """The rendered subject, text body and HTML body of ``template``.

    Every ``*_url`` variable must be an ``http`` or ``https`` link: the API refuses anything else at
    submission (and plain ``http`` where the deployment does not allow it), and this check keeps a
    ``javascript:`` link out of an ``href`` whatever route a payload took to the worker.

    Raises:
        PermanentJobError: the template needs a variable that was not given, or fails to render, or
            a link variable is not an http(s) URL (``scheme_not_allowed``, ``url_not_allowed``).
    """
    for name, value in variables.items():
        if name.endswith(LINK_SUFFIX):
            try:
                check_link(value, allow_http=True, field_name=name)
            except ValidationFailed as exc:
                raise PermanentJobError(exc.message, code=exc.code) from None
    env = environment()
    try:
        return tuple(  # type: ignore[return-value]
            env.get_template(f"{template}/{part}").render(**variables)
            for part in ("subject.txt", "body.txt", "body.html")
        )
    except TemplateError as exc:
        raise PermanentJobError(f"Template {template!r} could not be rendered: {exc}.", code="template_error") from None


#: Header lines are folded to this many columns (RFC 5322's recommendation).
MAX_LINE = 78


@dataclass(frozen=True)
class OutgoingMessage:
    """A message ready for SMTP: the envelope and the exact bytes to send (CRLF line endings)."""

    sender: str
    recipients: tuple[str, ...]
    message_id: str
    data: bytes


def address(recipient: Recipient) -> str:
    """The header form of a recipient (a non-ASCII display name is RFC 2047-encoded)."""
    return formataddr((recipient.name or "", recipient.email), charset="utf-8")


def compose(payload: SendEmailPayload, *, job_id: str, sender: str, message_id_domain: str) -> OutgoingMessage:
    """The message for an ``email.send`` payload, with a Message-ID derived from the job id.

    Raises:
        PermanentJobError: a header would contain a line break, or the template fails.
    """
    return compose_message(
        payload.template,
        dict(payload.vars),
        to=payload.to,
        cc=payload.cc,
        subject=payload.subject,
        reply_to=payload.reply_to,
        job_id=job_id,
        message_id=f"<{job_id}@{message_id_domain}>",
        sender=sender,
    )


def compose_message(
    template: str,
    variables: dict[str, Any],
    *,
    to: Sequence[Recipient],
    cc: Sequence[Recipient] = (),
    subject: str | None = None,
    reply_to: Recipient | None = None,
    job_id: str,
    message_id: str,
    sender: str,
) -> OutgoingMessage:
    """One message: both parts rendered from ``template``, the headers, the given Message-ID.

    Every header value is checked for line breaks here, on top of the contract's checks at the API
    (reliability-security.md §7.3), since :func:`wire_bytes` writes values as given.

    Raises:
        PermanentJobError: a header would contain a line break, or the template fails.
    """
    rendered_subject, text, html = render_parts(template, variables)
    subject = subject or rendered_subject.strip()
    people = [*to, *cc, *([reply_to] if reply_to else [])]
    values = [subject, sender, message_id, job_id, *(p.email for p in people), *(p.name or "" for p in people)]
    if any(LINE_BREAKS.search(value) for value in values):
        raise PermanentJobError("A header value contains a line break.", code="invalid_header_value")
    envelope_from = parseaddr(sender)[1]
    if not envelope_from:
        raise PermanentJobError(f"The sender {sender!r} is not an address.", code="invalid_address")
    headers = [("From", sender), ("To", ", ".join(address(r) for r in to))]
    if cc:
        headers.append(("Cc", ", ".join(address(r) for r in cc)))
    if reply_to:
        headers.append(("Reply-To", address(reply_to)))
    headers += [
        ("Subject", subject),
        ("Date", format_datetime(datetime.now(UTC))),
        ("Message-ID", message_id),
        ("X-Offload-Job-Id", job_id),
    ]
    return OutgoingMessage(
        sender=envelope_from,
        recipients=tuple(r.email for r in [*to, *cc]),
        message_id=message_id,
        data=wire_bytes(headers, text, html),
    )


def _header_line(name: str, value: str) -> str:
    """One header, folded at 78 columns, RFC 2047-encoded when it is not ASCII, ending in CRLF."""
    if value.isascii() and len(name) + 2 + len(value) <= MAX_LINE:
        return f"{name}: {value}\r\n"
    encoded = Header(value, None if value.isascii() else "utf-8", header_name=name).encode(
        splitchars=",; ", maxlinelen=MAX_LINE, linesep="\r\n"
    )
    return f"{name}: {encoded}\r\n"


def _text_part(body: str, subtype: str) -> bytes:
    """A UTF-8 text part, base64 in 76-column lines (safe for any content, any line length)."""
    encoded = base64.encodebytes(body.encode()).replace(b"\n", b"\r\n")
    head = f"Content-Type: text/{subtype}; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    return head.encode() + encoded


def wire_bytes(headers: Sequence[tuple[str, str]], text: str, html: str) -> bytes:
    """A ``multipart/alternative`` message (text, then HTML) as it goes on the wire, CRLF throughout.

    Written directly rather than through ``email.message``: the standard library's classes spend
    0.3-1.3 ms per message (policy objects, header parsing and refolding), which was most of an
    email's CPU in a batch; this costs a few tens of microseconds. The output is plain RFC 5322 /
    RFC 2045 that the standard parser reads back without defects (the tests check that). The
    boundary cannot occur in the parts: base64 never contains ``-``.
    """
    boundary = f"=_offload_{secrets.token_hex(12)}"
    head = "".join(_header_line(name, value) for name, value in headers)
    head += f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
    separator = f"--{boundary}\r\n".encode()
    return b"".join(
        (
            head.encode(),
            separator,
            _text_part(text, "plain"),
            separator,
            _text_part(html, "html"),
            f"--{boundary}--\r\n".encode(),
        )
    )
