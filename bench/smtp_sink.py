"""``python -m bench.smtp_sink --port P --out FILE``: the SMTP server the email measurements send to.

A real aiosmtpd server on 127.0.0.1, in a process of its own so that it does not share the
benchmark's GIL, which accepts every recipient and every message and only counts them (no parsing,
no storage): the cheapest server a real SMTP client can talk to, so the measurement is the worker's
side of SMTP. When it is stopped (SIGTERM or SIGINT) it writes what it counted to ``FILE`` as JSON.
The status store stays the source of truth for what succeeded; this count is the cross-check that
the messages really arrived.
"""

from __future__ import annotations

from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from bench.serve import serve_until_signalled, server_args


class CountingHandler:
    """Accepts everything; counts connections, recipients and messages.

    aiosmtpd runs every hook (and the server factory) on its one event-loop thread, so the counters
    need no lock.
    """

    def __init__(self) -> None:
        self.connections = 0
        self.messages = 0
        self.recipients = 0

    async def handle_RCPT(self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any) -> str:
        """Take every recipient."""
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        """Count the message (and its recipients) and accept it."""
        self.messages += 1
        self.recipients += len(envelope.rcpt_tos)
        return "250 Message accepted for delivery"

    def as_dict(self) -> dict[str, int]:
        """JSON form (``connections`` includes the readiness checks of aiosmtpd and of the benchmark)."""
        return {"messages": self.messages, "recipients": self.recipients, "connections": self.connections}


class CountingController(Controller):
    """aiosmtpd's controller, counting the connections it serves (one SMTP server object each)."""

    def __init__(self, handler: CountingHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.counter = handler

    def factory(self) -> SMTP:
        """A server for one new connection."""
        self.counter.connections += 1
        return super().factory()


def main() -> None:
    """Serve until SIGTERM or SIGINT, then write the counts."""
    args = server_args("python -m bench.smtp_sink")
    handler = CountingHandler()
    # A fixed server name: aiosmtpd would otherwise look up the machine's FQDN for every connection.
    controller = CountingController(handler, hostname="127.0.0.1", port=args.port, server_hostname="bench-sink")
    serve_until_signalled(args.port, args.out, start=controller.start, stop=controller.stop, counts=handler.as_dict)


if __name__ == "__main__":
    main()
