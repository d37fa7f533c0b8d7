"""The webhook receiver of the `webhooks` scenario, in its own process:
`python -m bench.receiver '{"port": P, "delay": 0.05}'`.

It stands for a customer's endpoint that answers 200 after `delay` seconds (50 ms), and must
not be what limits the figure: one process, asyncio's low-level protocol API, HTTP/1.1 with
keep-alive, no framework. A request costs it a header split and a timer, so on this machine it
takes several thousand a second while each waits its 50 ms concurrently.

It does not verify signatures (HMAC work, in the process the measurement shares its 2 cores
with); it keeps every `sample_every`-th request whole (path, headers, body), up to
`max_samples`, and the suite verifies those with the endpoint's secret. For every request it
records the arrival time (epoch seconds, `time.time()`, the clock PostgreSQL's timestamps are
read against), the `webhook-id` and the path, so a delivery can be joined to its event's
publish time.

Control requests (answered at once, not counted):
- `GET /_stats`: `{"count", "first", "last"}` (arrival times of the first and last request).
- `GET /_records`: every request as `[arrival, webhook-id, path]`.
- `GET /_samples`: the kept requests, `{"path", "headers", "body"}`.
- `POST /_reset`: forget everything (between runs).

It listens on 127.0.0.1 only and runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

_ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
_ANSWER_CLOSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
                 b"Connection: close\r\n\r\nok")


class State:
    """What the receiver saw; one per process, shared by its connections."""

    def __init__(self, delay: float, sample_every: int, max_samples: int) -> None:
        self.delay = delay
        self.sample_every = max(1, sample_every)
        self.max_samples = max_samples
        self.reset()

    def reset(self) -> None:
        self.records: list[tuple[float, str, str]] = []
        self.samples: list[dict] = []

    def record(self, path: str, headers: dict[str, str], body: bytes) -> None:
        self.records.append((time.time(), headers.get("webhook-id", ""), path))
        if len(self.records) % self.sample_every == 0 and len(self.samples) < self.max_samples:
            self.samples.append({"path": path, "headers": headers,
                                 "body": body.decode("utf-8", "replace")})

    def control(self, method: str, path: str) -> bytes | None:
        """The answer to a control request, or None if `path` is not one."""
        if path == "/_stats":
            payload = {"count": len(self.records),
                       "first": self.records[0][0] if self.records else None,
                       "last": self.records[-1][0] if self.records else None}
        elif path == "/_records":
            payload = self.records
        elif path == "/_samples":
            payload = self.samples
        elif path == "/_reset" and method == "POST":
            self.reset()
            payload = {"ok": True}
        else:
            return None
        body = json.dumps(payload).encode()
        return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body)


class Connection(asyncio.Protocol):
    """One client connection: requests are parsed as they arrive, each answered `delay`
    seconds later, in order (a pipelining client gets its answers in the order it asked)."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            lines = bytes(self.buffer[:head_end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0") or 0)
            total = head_end + 4 + length
            if len(self.buffer) < total:
                return
            body = bytes(self.buffer[head_end + 4:total])
            del self.buffer[:total]
            method, path = [*lines[0].split(" "), "", ""][:2]
            close = headers.get("connection", "").lower() == "close"
            control = self.state.control(method, path) if path.startswith("/_") else None
            if control is not None:
                self.transport.write(control)
                continue
            self.state.record(path, headers, body)
            self.loop.call_later(self.state.delay, self._answer, close)

    def _answer(self, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(_ANSWER_CLOSE if close else _ANSWER)
        if close:
            self.transport.close()


async def serve(spec: dict) -> None:
    state = State(float(spec.get("delay", 0.05)), int(spec.get("sample_every", 500)),
                  int(spec.get("max_samples", 50)))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(state), "127.0.0.1",
                                      int(spec["port"]), backlog=4096, reuse_address=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    print(json.dumps({"listening": server.sockets[0].getsockname()[1]}), flush=True)
    async with server:
        await stop


def main(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    if spec.get("host", "127.0.0.1") != "127.0.0.1":
        raise SystemExit("the receiver listens only on 127.0.0.1")
    asyncio.run(serve(spec))


if __name__ == "__main__":
    main(sys.argv)
