"""Composing messages from templates: both parts, escaping, literal variables, safe headers."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from offload.contracts.email import REQUIRED_VARS, TEMPLATE_NAMES, SendEmailPayload
from offload.errors import PermanentJobError
from offload_email.compose import compose, environment

JOB_ID = "6a2e3a38-3f1e-4a3c-9f0e-3b8f3c1d2e4f"


def _payload(**overrides: object) -> SendEmailPayload:
    values: dict[str, object] = {
        "to": [{"email": "ann@example.com", "name": "Ann"}],
        "template": "welcome",
        "vars": {"name": "Ann"},
    }
    values.update(overrides)
    return SendEmailPayload.model_validate(values)


def _compose(payload: SendEmailPayload) -> EmailMessage:
    """Compose, then read the wire bytes back with the modern parser (what a mail client would see)."""
    out = compose(payload, job_id=JOB_ID, sender="Offload <no-reply@offload.local>", message_id_domain="offload.local")
    assert out.sender == "no-reply@offload.local" and out.message_id == f"<{JOB_ID}@offload.local>"
    assert b"\r\n" in out.data and b"\n" not in out.data.replace(b"\r\n", b"")  # CRLF only
    parsed = email.message_from_bytes(out.data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage) and not parsed.defects
    return parsed


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_every_shipped_template_has_three_parts_and_renders_with_its_required_vars(template: str) -> None:
    for part in ("subject.txt", "body.txt", "body.html"):
        environment().get_template(f"{template}/{part}")
    variables = {
        name: f"https://app.example/{name}" if name.endswith("_url") else f"<{name}>"
        for name in REQUIRED_VARS[template]
    }
    payload = _payload(template=template, vars=variables)
    message = _compose(payload)
    assert message.get_body(("plain",)) is not None and message.get_body(("html",)) is not None


def test_a_message_has_both_parts_and_a_message_id_from_the_job_id() -> None:
    message = _compose(_payload())
    assert message["Message-ID"] == f"<{JOB_ID}@offload.local>" and message["X-Offload-Job-Id"] == JOB_ID
    assert message["To"] == "Ann <ann@example.com>" and message["Subject"].startswith("Welcome")
    assert "Hello Ann," in message.get_body(("plain",)).get_content()


def test_variables_are_data_escaped_in_html_and_never_evaluated() -> None:
    message = _compose(_payload(vars={"name": "<script>alert(1)</script> {{7*7}}"}))
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert "{{7*7}}" in html and "{{7*7}}" in text and "49" not in html


def test_a_subject_that_renders_with_a_line_break_fails_permanently() -> None:
    payload = _payload(
        template="report_ready",
        vars={"title": "Q3\r\nBcc: victim@example.com", "download_url": "https://app.example/r"},
    )
    with pytest.raises(PermanentJobError) as caught:
        _compose(payload)
    assert caught.value.code == "invalid_header_value"


def test_a_missing_variable_fails_permanently_naming_it() -> None:
    payload = SendEmailPayload.model_construct(
        to=_payload().to, cc=[], template="welcome", vars={}, subject=None, reply_to=None
    )
    with pytest.raises(PermanentJobError, match="name"):
        _compose(payload)


def test_non_ascii_names_and_subjects_are_encoded_and_read_back() -> None:
    payload = _payload(
        to=[{"email": "zoe@example.com", "name": "Zoë Ünal"}],
        cc=[{"email": "li@example.com", "name": "李雷"}],
        subject="Grüße, 李雷 — ça va?",
    )
    message = _compose(payload)
    assert str(message["To"]) == "Zoë Ünal <zoe@example.com>" and str(message["Cc"]) == "李雷 <li@example.com>"
    assert str(message["Subject"]) == "Grüße, 李雷 — ça va?"
    assert "Hello Ann," in message.get_body(("plain",)).get_content()


def test_a_line_break_in_any_header_value_fails_permanently_even_past_the_contract() -> None:
    bad = _payload().model_copy(
        update={"to": [_payload().to[0].model_copy(update={"name": "Ann\nBcc: x@evil.example"})]}
    )
    with pytest.raises(PermanentJobError) as caught:
        _compose(bad)
    assert caught.value.code == "invalid_header_value"


def test_long_headers_are_folded_and_read_back_unchanged() -> None:
    to = [{"email": f"person{i}@example.com", "name": f"Person Number {i}"} for i in range(10)]
    subject = "An exceptionally long subject line, " * 5
    message = _compose(_payload(to=to, subject=subject.strip()))
    raw = message.as_bytes()
    assert max(len(line) for line in raw.split(b"\n")) <= 100  # folded, not one 600-column line
    assert [a.addr_spec for a in message["To"].addresses] == [r["email"] for r in to]
    assert str(message["Subject"]) == subject.strip()
