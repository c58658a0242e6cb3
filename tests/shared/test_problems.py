"""The items of a validation_failed error: a field's path, its JSON Pointer and the rule, built one way everywhere."""

from __future__ import annotations

import pytest

from offload import problems
from offload.contracts import BUILT_IN
from offload.errors import ValidationFailed
from offload.urls import UrlPolicy


def _resolve(document: object, pointer: str) -> object:
    """What an RFC 6901 pointer names in ``document`` (as a client would follow it)."""
    node = document
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]  # type: ignore[index]
    return node


def test_a_location_is_written_as_a_field_path_and_as_a_json_pointer() -> None:
    assert problems.located(("payload", "to", 0, "email"), "invalid_address", "bad") == {
        "field": "payload.to[0].email",
        "pointer": "/payload/to/0/email",
        "rule": "invalid_address",
        "problem": "bad",
    }
    assert problems.json_pointer(("payload", "vars", "a/b~c")) == "/payload/vars/a~1b~0c"
    assert (problems.field_path(()), problems.json_pointer(())) == ("body", "")
    assert problems.location_of("options.then[0].payload.ms") == ("options", "then", 0, "payload", "ms")
    assert problems.location_of("body") == ()


@pytest.mark.parametrize("field", ["", ".a", "a..b", "a[x]", "[0]", "a.", "a[0"])
def test_a_string_that_is_not_a_field_path_is_refused(field: str) -> None:
    with pytest.raises(ValueError):
        problems.location_of(field)


def test_a_parameter_has_no_pointer_and_nesting_moves_only_what_is_in_the_body() -> None:
    header = problems.parameter("Idempotency-Key", "string_too_long", "invalid header value")
    assert header == {
        "field": "Idempotency-Key",
        "pointer": None,
        "rule": "string_too_long",
        "problem": "invalid header value",
    }
    inner = [problems.in_body("payload.ms", "int_type", "x"), problems.in_body("body", "dict_type", "y"), header]
    assert problems.nested(inner, "jobs[2]") == [
        {"field": "jobs[2].payload.ms", "pointer": "/jobs/2/payload/ms", "rule": "int_type", "problem": "x"},
        {"field": "jobs[2]", "pointer": "/jobs/2", "rule": "dict_type", "problem": "y"},
        header,
    ]


def _errors(job_type: str, payload: dict) -> list[dict]:
    with pytest.raises(ValidationFailed) as caught:
        BUILT_IN.get(job_type).parse(payload)
    return caught.value.errors


def test_pydantic_errors_point_into_the_payload_with_pydantics_error_type_as_the_rule() -> None:
    errors = _errors("system.sleep", {"ms": "5", "extra": 1})
    assert [(e["field"], e["pointer"], e["rule"]) for e in errors] == [
        ("payload.ms", "/payload/ms", "int_type"),
        ("payload.extra", "/payload/extra", "extra_forbidden"),
    ]
    assert [(e["pointer"], e["rule"]) for e in _errors("system.sleep", {})] == [("/payload/ms", "missing")]
    assert [e["rule"] for e in _errors("system.sleep", {"ms": -1})] == ["greater_than_equal"]


def test_a_unions_member_names_are_not_taken_for_places_in_the_document() -> None:
    """pydantic's loc names the union member it tried (``int``, ``constrained-str``); no such member is sent."""
    payload = {"template": "welcome", "to": [{"email": "nope"}], "vars": {"name": ["a list"], "product": "P"}}
    errors = _errors("email.send", payload)
    assert {(e["field"], e["pointer"]) for e in errors} == {
        ("payload.to[0].email", "/payload/to/0/email"),
        ("payload.vars.name", "/payload/vars/name"),
    }
    assert {e["rule"] for e in errors if e["field"] == "payload.vars.name"} >= {"string_type", "int_type"}
    for error in errors:
        assert _resolve({"payload": payload}, error["pointer"]) is not None


def test_the_url_guard_names_the_field_and_the_rule() -> None:
    policy = UrlPolicy(resolver=lambda host, port: ["10.0.0.1"])
    with pytest.raises(ValidationFailed) as caught:
        policy.check("https://inside.example/x", field_name="options.callback_url")
    assert caught.value.errors == [
        {
            "field": "options.callback_url",
            "pointer": "/options/callback_url",
            "rule": "url_not_allowed",
            "problem": "it points to a private, loopback or reserved address",
        }
    ]
    with pytest.raises(ValidationFailed) as caught:
        policy.check("ftp://example.com/x", field_name="payload.source.url")
    assert [(e["pointer"], e["rule"]) for e in caught.value.errors] == [("/payload/source/url", "scheme_not_allowed")]
