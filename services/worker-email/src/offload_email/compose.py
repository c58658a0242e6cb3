"""Turning an ``email.send`` payload into a MIME message: pure, no I/O besides reading templates.

Templates are Jinja2 files under ``templates/<name>/`` (``subject.txt``, ``body.txt``,
``body.html``). The HTML part is autoescaped; variables are data and are never evaluated as
templates, so ``{{7*7}}`` in a value arrives as written. A missing variable is an error, not an
empty string.
"""

from __future__ import annotations

import email.policy
from collections.abc import Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache
from importlib import resources
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, select_autoescape

from offload.contracts.email import LINE_BREAKS, Recipient, SendEmailPayload
from offload.errors import PermanentJobError


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

    Raises:
        PermanentJobError: the template needs a variable that was not given, or fails to render.
    """
    env = environment()
    try:
        return tuple(  # type: ignore[return-value]
            env.get_template(f"{template}/{part}").render(**variables)
            for part in ("subject.txt", "body.txt", "body.html")
        )
    except TemplateError as exc:
        raise PermanentJobError(f"Template {template!r} could not be rendered: {exc}.", code="template_error") from None


def address(recipient: Recipient) -> Address:
    """The header form of a recipient."""
    return Address(display_name=recipient.name or "", addr_spec=recipient.email)


def compose(payload: SendEmailPayload, *, job_id: str, sender: str, message_id_domain: str) -> EmailMessage:
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
) -> EmailMessage:
    """One message: both parts rendered from ``template``, the headers, the given Message-ID.

    Raises:
        PermanentJobError: a header would contain a line break, or the template fails.
    """
    rendered_subject, text, html = render_parts(template, variables)
    subject = subject or rendered_subject.strip()
    if LINE_BREAKS.search(subject):
        raise PermanentJobError("The rendered subject contains a line break.", code="invalid_header_value")
    message = EmailMessage(policy=email.policy.SMTP)
    try:
        message["From"] = sender
        message["To"] = [address(r) for r in to]
        if cc:
            message["Cc"] = [address(r) for r in cc]
        if reply_to:
            message["Reply-To"] = address(reply_to)
        message["Subject"] = subject
    except (ValueError, TypeError) as exc:  # the policy refuses CR/LF in headers: defence in depth
        raise PermanentJobError(f"Invalid header value: {exc}.", code="invalid_header_value") from None
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = message_id
    message["X-Offload-Job-Id"] = job_id
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message
