"""reliability-security.md §7.3, rows 21-24: header injection, bad addresses, email volume, template data.

Each row's inputs go through the real API (Flask test client over the real publisher, Redis and
RabbitMQ); where the row promises something about what is sent, a real email worker delivers to a
real SMTP server on 127.0.0.1 and the test reads what arrived.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import dramatiq
import pytest

from offload.publish import Publisher
from offload_api.app import create_app
from tests.support import make_settings
from tests.support.email import Sink, register_email_worker
from tests.support.security import CheckedApi

WELCOME: dict[str, Any] = {
    "to": [{"email": "ann@example.com", "name": "Ann"}],
    "template": "welcome",
    "vars": {"name": "Ann"},
}


def _batch(count: int, **extra: Any) -> dict[str, Any]:
    return {"template": "welcome", "recipients": [{"email": f"u{i}@example.com"} for i in range(count)], **extra}


#: (job type, payload, error code, field path) for each refused input.
REFUSED = {
    # Row 21: a line break in a header value, in every spelling the row lists, wherever a header comes from.
    "row21-crlf-subject": ("email.send", {**WELCOME, "subject": "Hi\r\nBcc: victim@example.com"}, "payload.subject"),
    "row21-lf-subject": ("email.send", {**WELCOME, "subject": "Hi\nBcc: victim@example.com"}, "payload.subject"),
    "row21-percent-decoded-subject": (
        "email.send",
        {**WELCOME, "subject": unquote("Hi%0d%0aBcc: victim@example.com")},
        "payload.subject",
    ),
    "row21-u2028-subject": ("email.send", {**WELCOME, "subject": "Hi\u2028Bcc: victim@example.com"}, "payload.subject"),
    "row21-crlf-display-name": (
        "email.send",
        {**WELCOME, "to": [{"email": "ann@example.com", "name": "Ann\r\nBcc: victim@example.com"}]},
        "payload.to[0].name",
    ),
    "row21-crlf-batch-subject": (
        "email.batch",
        _batch(2, subject="Hi\r\nBcc: victim@example.com", vars={"name": "U"}),
        "payload.subject",
    ),
    # Row 22: one address per field, nothing smuggled after it.
    "row22-lf-bcc-address": (
        "email.send",
        {**WELCOME, "to": [{"email": "a@example.com\nBcc: x@example.com"}]},
        "payload.to[0].email",
    ),
    "row22-two-addresses": (
        "email.send",
        {**WELCOME, "to": [{"email": "a@example.com, b@example.com"}]},
        "payload.to[0].email",
    ),
    "row22-quoted-display-address": (
        "email.send",
        {**WELCOME, "to": [{"email": '"Evil <x@evil>" <a@b>'}]},
        "payload.to[0].email",
    ),
    "row22-reply-to-two-addresses": (
        "email.send",
        {**WELCOME, "reply_to": {"email": "a@example.com, b@example.com"}},
        "payload.reply_to.email",
    ),
    "row22-batch-recipient-bcc": (
        "email.batch",
        {
            "template": "welcome",
            "vars": {"name": "U"},
            "recipients": [{"email": "a@example.com\r\nBcc: x@example.com"}],
        },
        "payload.recipients[0].email",
    ),
}


@pytest.mark.parametrize(("job_type", "payload", "field"), REFUSED.values(), ids=REFUSED.keys())
def test_rows_21_22_injected_headers_and_bad_addresses_are_422(
    api: CheckedApi, publisher: Publisher, request: pytest.FixtureRequest, job_type: str, payload: dict, field: str
) -> None:
    code = "invalid_header_value" if request.node.callspec.id.startswith("row21") else "invalid_address"
    response = api.submit(job_type, payload)
    body = response.get_json()
    assert (response.status_code, body["error"]) == (422, code), body
    assert field in [error["field"] for error in body["errors"]], body["errors"]
    assert publisher.store.queries.list_jobs(tenant="acme").records == []  # nothing was recorded or queued


def test_row21_defence_in_depth_a_rendered_header_with_a_line_break_fails_the_job_and_sends_nothing(
    api: CheckedApi, publisher: Publisher, email_worker: dramatiq.Worker, smtp_sink: tuple[Sink, int]
) -> None:
    # Variables are data, so the API takes a name with CRLF; the welcome subject ("Welcome to
    # Offload, {{ name }}!") would carry it into a header, which the worker refuses to write.
    sink, _ = smtp_sink
    payload = {**WELCOME, "vars": {"name": "Ann\r\nBcc: victim@example.com"}}
    response = api.submit("email.send", payload)
    assert response.status_code == 202, response.get_json()
    record = publisher.wait(response.get_json()["id"], timeout=15)
    assert record is not None and record.state == "failed", record
    assert record.error_code == "invalid_header_value" and record.attempts == 1  # permanent: not retried
    assert sink.messages == []  # nothing was sent
    follow_up = api.submit("email.send", WELCOME)  # the worker goes on: a clean email arrives
    assert publisher.wait(follow_up.get_json()["id"], timeout=15).state == "succeeded"
    assert [m["To"] for m in sink.messages] == ["Ann <ann@example.com>"]
    assert "victim@example.com" not in str(sink.messages[0])


def test_row23_one_thousand_emails_a_minute_meet_the_quota_429(api: CheckedApi, publisher: Publisher) -> None:
    # The shipped quota is 10,000 emails an hour per tenant: a tenant sending 1,000 a minute is
    # accepted for ten minutes' worth and refused the eleventh, while another tenant is not affected.
    for minute in range(10):
        accepted = api.submit("email.batch", _batch(1000, vars={"name": "U"}))
        assert accepted.status_code == 202, (minute, accepted.get_json())
    refused = api.submit("email.batch", _batch(1000, vars={"name": "U"}))
    body = refused.get_json()
    assert (refused.status_code, body["error"]) == (429, "quota_exceeded"), body
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert api.submit("email.send", WELCOME).status_code == 429  # one more single email is refused too
    assert api.as_("globex").submit("email.send", WELCOME).status_code == 202
    assert len(publisher.store.queries.list_jobs(tenant="acme", limit=100).records) == 10  # the refused were not queued


def test_row23_a_recipient_domain_off_the_allow_list_is_422_and_nothing_is_queued(
    publisher: Publisher, smtp_sink: tuple[Sink, int], email_worker: dramatiq.Worker
) -> None:
    settings = make_settings()
    limited = Publisher.from_settings(settings)
    try:
        register_email_worker(limited, email_allowed_domains="example.com, *.example.org")
        api = CheckedApi(create_app(settings, publisher=limited).test_client())
        refused = {
            "send-to": ("email.send", {**WELCOME, "to": [{"email": "eve@evil.example"}]}, ["payload.to[0].email"]),
            "send-cc": (
                "email.send",
                {**WELCOME, "cc": [{"email": "ok@example.com"}, {"email": "eve@example.com.evil.example"}]},
                ["payload.cc[1].email"],
            ),
            "batch": (
                "email.batch",
                {
                    **_batch(1, vars={"name": "U"}),
                    "recipients": [{"email": "a@example.com"}, {"email": "b@EXAMPLE.net"}],
                },
                ["payload.recipients[1].email"],
            ),
            "bare-parent-of-wildcard": (
                "email.send",
                {**WELCOME, "to": [{"email": "x@example.org"}]},
                ["payload.to[0].email"],
            ),
        }
        for name, (job_type, payload, fields) in refused.items():
            response = api.submit(job_type, payload)
            body = response.get_json()
            assert (response.status_code, body["error"]) == (422, "recipient_not_allowed"), (name, body)
            assert [e["field"] for e in body["errors"]] == fields, (name, body)
        assert publisher.store.queries.list_jobs(tenant="acme", limit=10).records == []  # nothing was queued
        allowed = [
            {**WELCOME, "to": [{"email": "ann@Example.COM"}], "cc": [{"email": "bob@mail.example.org"}]},
            {**WELCOME, "reply_to": {"email": "help@elsewhere.example"}},  # a reply-to address is not sent to
        ]
        for payload in allowed:
            response = api.submit("email.send", payload)
            assert response.status_code == 202, response.get_json()
            assert limited.wait(response.get_json()["id"], timeout=15).state == "succeeded"
        sink, _ = smtp_sink
        assert sorted(m["To"] for m in sink.messages) == ["Ann <ann@example.com>", "ann@example.com"]
    finally:
        limited.close()


TEMPLATE_DATA = {
    "row24-jinja-expression": ("{{7*7}}", "{{7*7}}"),
    "row24-script-tag": ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    "row24-jinja-statement": ("{% for x in range(3) %}x{% endfor %}", "{% for x in range(3) %}x{% endfor %}"),
}


@pytest.mark.parametrize(("value", "escaped"), TEMPLATE_DATA.values(), ids=TEMPLATE_DATA.keys())
def test_row24_template_variables_are_rendered_literally_and_html_escaped(
    api: CheckedApi,
    publisher: Publisher,
    email_worker: dramatiq.Worker,
    smtp_sink: tuple[Sink, int],
    value: str,
    escaped: str,
) -> None:
    sink, _ = smtp_sink
    response = api.submit("email.send", {**WELCOME, "vars": {"name": value}})
    assert response.status_code == 202, response.get_json()
    assert publisher.wait(response.get_json()["id"], timeout=15).state == "succeeded"
    (message,) = sink.messages
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert escaped in html and value in text and value in message["Subject"]  # as written, escaped in HTML
    assert "<script>" not in html and "49" not in html + text and "xxx" not in html + text  # nothing evaluated
