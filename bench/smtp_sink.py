"""The SMTP server of the `emails` scenario, in its own process:
`python -m bench.smtp_sink '{"port": P, "control_port": C}'`.

It stands for the mail relay a deployment hands its email to, and must not be what limits
the figure: aiosmtpd's SMTP protocol on one asyncio loop, no TLS, no authentication, a fixed
host name (aiosmtpd would otherwise look the machine's name up for every connection), MAIL
FROM and RCPT TO addresses taken from their angle brackets (`_Smtp`), and a handler that
accepts every message and keeps only what the suite checks: for each message
its arrival time (epoch seconds, `time.time()`, the clock PostgreSQL's timestamps are read
against), its Message-ID (read from the header block, not a full parse) and its size. Every
`sample_every`-th message is kept whole, up to `max_samples`, so the suite can check that
what arrived is a rendered email with both parts.

Control requests, plain HTTP on `control_port` (answered at once):
- `GET /_stats`: `{"count", "first", "last", "bytes", "connections"}`.
- `GET /_records`: every message as `[arrival, message-id]`.
- `GET /_samples`: the kept messages (raw text).
- `POST /_reset`: forget everything (between runs).

Both listen on 127.0.0.1 only; it runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time

from aiosmtpd.smtp import SMTP

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


class State:
    def __init__(self, sample_every: int, max_samples: int) -> None:
        self.sample_every = max(1, sample_every)
        self.max_samples = max_samples
        self.connections = 0
        self.reset()

    def reset(self) -> None:
        self.records: list[tuple[float, str]] = []
        self.samples: list[str] = []
        self.bytes = 0

    def accept(self, content: bytes) -> None:
        head = content.split(b"\r\n\r\n", 1)[0]
        found = _MESSAGE_ID.search(head)
        self.records.append((time.time(), found.group(1).decode() if found else ""))
        self.bytes += len(content)
        if len(self.records) % self.sample_every == 0 and len(self.samples) < self.max_samples:
            self.samples.append(content.decode("utf-8", "replace"))

    def control(self, method: str, path: str) -> dict | list | None:
        if path == "/_stats":
            return {"count": len(self.records),
                    "first": self.records[0][0] if self.records else None,
                    "last": self.records[-1][0] if self.records else None,
                    "bytes": self.bytes, "connections": self.connections}
        if path == "/_records":
            return self.records
        if path == "/_samples":
            return self.samples
        if path == "/_reset" and method == "POST":
            self.reset()
            return {"ok": True}
        return None


class Handler:
    """aiosmtpd's handler: every recipient and every message accepted."""

    def __init__(self, state: State) -> None:
        self.state = state

    async def handle_DATA(self, server, session, envelope) -> str:
        self.state.accept(envelope.original_content or envelope.content)
        return "250 2.0.0 Ok: queued"


class _Smtp(SMTP):
    """aiosmtpd's protocol, with a cheap reading of `<address> parameters`.

    aiosmtpd parses every MAIL FROM and RCPT TO address with the email package's RFC 5322
    header parser and defines a `typing.Protocol` class on each call: a third of the server's
    CPU per message (py-spy, 1.1 ms a message in all), on the 2 cores the workers measured
    share. The senders here are Django's SMTP backend; anything not in angle brackets still
    goes to aiosmtpd's parser."""

    def _getaddr(self, arg: str):
        text = arg.strip()
        end = text.find(">")
        if text.startswith("<") and end > 0 and " " not in text[:end]:
            return text[1:end], text[end + 1:]
        return super()._getaddr(arg)


class Control(asyncio.Protocol):
    """One control connection: a request line (and headers) in, a JSON answer out."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        request_line = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")[0]
        method, path = [*request_line.split(" "), "", ""][:2]
        payload = self.state.control(method, path)
        status = b"200 OK" if payload is not None else b"404 Not Found"
        body = json.dumps(payload if payload is not None else {"error": "not found"}).encode()
        self.transport.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                             b"Connection: close\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\n\r\n" + body)
        self.transport.close()


async def serve(spec: dict) -> None:
    state = State(int(spec.get("sample_every", 500)), int(spec.get("max_samples", 20)))
    handler = Handler(state)
    loop = asyncio.get_running_loop()

    def smtp() -> SMTP:
        state.connections += 1
        return _Smtp(handler, hostname="bench-sink.localhost", ident="bench smtp sink",
                    decode_data=False, enable_SMTPUTF8=True, timeout=60)

    server = await loop.create_server(smtp, "127.0.0.1", int(spec["port"]), backlog=1024,
                                      reuse_address=True)
    control = await loop.create_server(lambda: Control(state), "127.0.0.1",
                                       int(spec["control_port"]), reuse_address=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    print(json.dumps({"listening": server.sockets[0].getsockname()[1],
                      "control": control.sockets[0].getsockname()[1]}), flush=True)
    async with server, control:
        await stop


def main(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    if spec.get("host", "127.0.0.1") != "127.0.0.1":
        raise SystemExit("the SMTP sink listens only on 127.0.0.1")
    asyncio.run(serve(spec))


if __name__ == "__main__":
    main(sys.argv)
