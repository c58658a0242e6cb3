"""A worker killed right after the SMTP server took the message, before the ack: still one copy."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from offload.publish import Publisher
from tests.helpers import wait_for
from tests.support.email import Sink
from tests.system.stack import Worker

WELCOME = {"to": [{"email": "ann@example.com"}], "template": "welcome", "vars": {"name": "Ann"}}


class KillingSink(Sink):
    """Takes the first message, then kills the worker before answering 250 (the worst moment)."""

    victim: Worker | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if self.victim is not None and self.victim.process is not None:
            os.killpg(self.victim.process.pid, signal.SIGKILL)
            self.victim = None
        return reply


def test_a_worker_killed_after_the_server_took_the_email_does_not_send_it_again(
    env: dict[str, str], logs: Path, publisher: Publisher
) -> None:
    from aiosmtpd.controller import Controller

    from tests.helpers import free_port

    sink, port = KillingSink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    worker = Worker({**env, "OFFLOAD_SMTP_PORT": str(port)}, logs, domain="email")
    try:
        sink.victim = worker
        job = publisher.publish("email.send", WELCOME, tenant="acme")
        wait_for(lambda: worker.process is not None and worker.process.poll() is not None, timeout=20)
        assert len(sink.messages) == 1 and publisher.get(job.job_id).state == "running"
        worker.start()  # the job is redelivered
        record = publisher.wait(job.job_id, timeout=30)
        assert record is not None and record.state == "succeeded" and record.attempts == 2
        assert record.result["duplicate"] is True
        assert len(sink.messages) == 1  # the server still holds one copy
    finally:
        worker.stop()
        controller.stop()
