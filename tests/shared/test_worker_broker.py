"""The worker's broker: signals reach exactly the middleware that define them, in Dramatiq's order."""

from __future__ import annotations

from typing import Any

import pytest
from dramatiq.middleware import Middleware, SkipMessage

from offload.broker import build_broker


class Recorder(Middleware):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls

    def before_process_message(self, _broker: Any, _message: Any) -> None:
        self.calls.append(f"before {self.name}")

    def after_process_message(self, _broker: Any, _message: Any, *, result: Any = None, exception: Any = None) -> None:
        self.calls.append(f"after {self.name}")


class Quiet(Middleware):
    """Defines no process_message hook: never called for it."""

    def before_ack(self, _broker: Any, _message: Any) -> None:
        raise AssertionError("not this signal")


class Failing(Middleware):
    def before_process_message(self, _broker: Any, _message: Any) -> None:
        raise RuntimeError("a broken middleware")


class Skipping(Middleware):
    def before_process_message(self, _broker: Any, _message: Any) -> None:
        raise SkipMessage()


def test_hooks_run_in_dramatiqs_order_and_only_where_defined(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    broker = build_broker("amqp://guest:guest@127.0.0.1:5672/", middleware=[Recorder("a", calls), Quiet()])
    broker.add_middleware(Recorder("b", calls))  # a middleware added later is called too
    broker.emit_before("process_message", object())
    broker.emit_after("process_message", object(), result=None)
    assert calls == ["before a", "before b", "after b", "after a"]
    monkeypatch.setattr(Quiet, "before_process_message", lambda *_: calls.append("quiet"), raising=False)
    broker.add_middleware(Recorder("c", calls))  # the hooks are looked up again
    calls.clear()
    broker.emit_before("process_message", object())
    assert calls == ["before a", "quiet", "before b", "before c"]


def test_a_failing_hook_is_logged_and_the_others_run_and_skip_message_goes_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    broker = build_broker("amqp://guest:guest@127.0.0.1:5672/", middleware=[Failing(), Recorder("a", calls)])
    broker.emit_before("process_message", object())
    assert calls == ["before a"]
    assert "Unexpected failure in before_process_message" in caplog.text
    skipping = build_broker("amqp://guest:guest@127.0.0.1:5672/", middleware=[Skipping(), Recorder("b", calls)])
    with pytest.raises(SkipMessage):
        skipping.emit_before("process_message", object())
