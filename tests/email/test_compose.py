"""Composing messages from templates: both parts, escaping, literal variables, safe headers."""

from __future__ import annotations

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


def _compose(payload: SendEmailPayload):
    return compose(payload, job_id=JOB_ID, sender="Offload <no-reply@offload.local>", message_id_domain="offload.local")


@pytest.mark.parametrize("template", TEMPLATE_NAMES)
def test_every_shipped_template_has_three_parts_and_renders_with_its_required_vars(template: str) -> None:
    for part in ("subject.txt", "body.txt", "body.html"):
        environment().get_template(f"{template}/{part}")
    payload = _payload(template=template, vars={name: f"<{name}>" for name in REQUIRED_VARS[template]})
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
    payload = _payload(template="report_ready", vars={"title": "Q3\r\nBcc: victim@example.com", "download_url": "x"})
    with pytest.raises(PermanentJobError) as caught:
        _compose(payload)
    assert caught.value.code == "invalid_header_value"


def test_a_missing_variable_fails_permanently_naming_it() -> None:
    payload = SendEmailPayload.model_construct(
        to=_payload().to, cc=[], template="welcome", vars={}, subject=None, reply_to=None
    )
    with pytest.raises(PermanentJobError, match="name"):
        _compose(payload)
