"""A real SMTP server for the email tests (aiosmtpd, on 127.0.0.1 and a spare port): it
parses every message it accepts (headers, the text and HTML parts), and answers what a test
scripts per recipient address: a reply to RCPT (`450 …` then accept, or `550 …`), a reply to
DATA, or a callback run when DATA arrives before the server replies (a test that must act in
the window between the server accepting a message and the sender's record of it).

    with SmtpSink() as sink:
        settings.EMAIL_HOST, settings.EMAIL_PORT = sink.host, sink.port
        sink.script("bob@example.com", rcpt=["450 4.2.1 Try again later", None])
        ...
        [message] = sink.messages_to("bob@example.com")
        message.text, message.html, message["Message-ID"]
        sink.connections, message.connection  # how many sessions greeted; which one carried it
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_to: list[str]
    raw: bytes
    message: EmailMessage
    at: float
    connection: int = 0  # the number of the SMTP session that carried it (1, 2, …)

    def __getitem__(self, header: str) -> str | None:
        return self.message[header]

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def _part(self, mime: str) -> str | None:
        """The part's text, its lines ending in \\n (on the wire they end in CRLF)."""
        part = self.message.get_body(preferencelist=(mime.split("/")[1],))
        if part is None or part.get_content_type() != mime:
            return None
        return part.get_content().replace("\r\n", "\n")

    @property
    def text(self) -> str | None:
        return self._part("text/plain")

    @property
    def html(self) -> str | None:
        return self._part("text/html")


@dataclass
class Script:
    rcpt: list[str | None] = field(default_factory=list)  # replies to RCPT, in turn; None: 250
    data: list[str | None] = field(default_factory=list)  # replies to DATA, in turn
    on_data: Callable[[Received], None] | None = None  # before DATA is answered (accepted)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    # A client greets once per connection (smtplib's sendmail says EHLO only when it has not
    # yet), so greetings count connections; the probe aiosmtpd's controller makes when it
    # starts never greets, so it does not count.
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        session.conveyor_connection = self.sink._greeted()
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        session.conveyor_connection = self.sink._greeted()
        return f"250 {server.hostname}"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.sink._next(address, "rcpt")
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        received = Received(
            mail_from=envelope.mail_from, rcpt_to=list(envelope.rcpt_tos), raw=raw,
            message=email.message_from_bytes(raw, policy=email.policy.default), at=time.time(),
            connection=getattr(session, "conveyor_connection", 0))
        reply = None
        for address in envelope.rcpt_tos:
            reply = reply or self.sink._next(address, "data")
        if reply:
            self.sink._refused(received, reply)
            return reply
        for address in envelope.rcpt_tos:
            script = self.sink._scripts.get(address.lower())
            if script and script.on_data:
                script.on_data(received)  # runs in the server's loop: a test's hold is real
        self.sink._accept(received)
        return f"250 2.0.0 Ok: queued as {len(self.sink.received)}"


class SmtpSink:
    def __init__(self, port: int = 0) -> None:
        self.host = "127.0.0.1"
        self.received: list[Received] = []
        self.refused: list[tuple[Received, str]] = []
        self._scripts: dict[str, Script] = {}
        self.connections = 0  # SMTP sessions that greeted (EHLO or HELO)
        self._lock = threading.Lock()
        self._controller = Controller(_Handler(self), hostname=self.host, port=port or 0,
                                      decode_data=False, ready_timeout=10)
        self.port = 0

    def start(self) -> SmtpSink:
        if self._controller.port == 0:
            from tests.faults.procs import free_port

            self._controller.port = free_port()
        self._controller.start()
        self.port = self._controller.port
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def script(self, address: str, *, rcpt: list[str | None] | None = None,
               data: list[str | None] | None = None,
               on_data: Callable[[Received], None] | None = None) -> None:
        with self._lock:
            self._scripts[address.lower()] = Script(rcpt=list(rcpt or []),
                                                    data=list(data or []), on_data=on_data)

    def _next(self, address: str, step: str) -> str | None:
        with self._lock:
            script = self._scripts.get(address.lower())
            replies = getattr(script, step) if script else []
            return replies.pop(0) if replies else None

    def _greeted(self) -> int:
        with self._lock:
            self.connections += 1
            return self.connections

    def _accept(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    def _refused(self, received: Received, reply: str) -> None:
        with self._lock:
            self.refused.append((received, reply))

    def messages_to(self, address: str) -> list[Received]:
        with self._lock:
            return [m for m in self.received
                    if address.lower() in (a.lower() for a in m.rcpt_to)]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        with self._lock:
            return list(self.received)
