"""HTTP/1.1 load generator, run as its own process: `python -m bench.loadgen '<json spec>'`.

Why not wrk: a fresh machine has only Python 3.11, and the suite must run there. This client
keeps one keep-alive connection per worker on asyncio's low-level protocol API (no per-request
object churn beyond the bytes themselves), talks only to 127.0.0.1 and stops by itself after
`duration` seconds or `requests` requests. It prints one JSON line: counts by status, req/s
and latency percentiles in milliseconds.

Two modes:
- closed loop (default): each connection sends its next request as soon as the answer arrives;
  this finds the maximum rate.
- open loop (`rate` > 0): requests start on a fixed schedule whatever the server does, so a
  slow answer cannot hide the queueing delay it causes (no coordinated omission); latency is
  measured from the scheduled start.

Bodies: `body` is sent as is; `{seq}` in it is replaced with a run-unique number, `{now}` with
the send time as an ISO-8601 UTC timestamp (used to measure publish-to-running latency).
`body_file` names a file to send instead (a body of megabytes does not fit in a command-line
argument). `paths`, a list, or `paths_file`, a file of one path a line, replaces `path`:
request n goes to `paths[n % len(paths)]` (reads of a different row each, none served from a
cache a previous request filled).

A server may end a keep-alive connection after a complete answer that says
`Connection: close` (gunicorn does when it recycles a worker, `--max-requests`): the next
request goes on a new connection and this is not counted as an error, only in `reconnects`.
A connection closed without that warning is an error, as before.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from itertools import count


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


class _Conn(asyncio.Protocol):
    """One keep-alive connection; `request()` sends bytes and waits for one full response."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = asyncio.get_running_loop().create_future()
        self.server_closes = False  # the last answer said `Connection: close`

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._maybe_done()

    def connection_lost(self, exc) -> None:
        if self.waiter and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    def _maybe_done(self) -> None:
        if self.waiter is None or self.waiter.done():
            return
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self.buffer[:head_end]).lower()
        length = 0
        start = head.find(b"content-length:")
        if start >= 0:
            end = head.find(b"\r\n", start)
            length = int(head[start + 15: end if end > 0 else None])
        total = head_end + 4 + length
        if len(self.buffer) < total:
            return
        status = int(head[9:12])
        body = bytes(self.buffer[head_end + 4: total])
        del self.buffer[:total]
        self.server_closes = b"\r\nconnection: close" in head
        self.waiter.set_result((status, body))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


class _Run:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.host = spec.get("host", "127.0.0.1")
        if self.host not in ("127.0.0.1", "localhost"):
            raise SystemExit("loadgen sends only to 127.0.0.1")
        self.port = int(spec["port"])
        method = spec.get("method", "GET")
        headers = {"Host": f"{self.host}:{self.port}", "Connection": "keep-alive",
                   **spec.get("headers", {})}
        self.body = spec.get("body", "")
        if spec.get("body_file"):
            with open(spec["body_file"], encoding="utf-8") as f:
                self.body = f.read()
        self.paths = spec.get("paths") or []
        if spec.get("paths_file"):
            with open(spec["paths_file"], encoding="utf-8") as f:
                self.paths = f.read().split()
        self.templated = bool(self.paths) or "{seq}" in self.body or "{now}" in self.body or any(
            "{seq}" in v for v in headers.values())
        path = "{path}" if self.paths else spec["path"]
        self.head_template = (f"{method} {path} HTTP/1.1\r\n"
                              + "".join(f"{k}: {v}\r\n" for k, v in headers.items()))
        self.fixed = None if self.templated else self._render(0, None)
        self.seq = count(int(spec.get("seq_start", 0)))
        self.statuses: dict[int, int] = {}
        self.latencies: list[float] = []
        self.errors = 0
        self.reconnects = 0
        self.received_bytes = 0
        self.sample_body: str | None = None

    def _render(self, seq: int, now: datetime | None) -> bytes:
        body = self.body
        head = self.head_template
        if self.templated:
            if self.paths:
                head = head.replace("{path}", self.paths[seq % len(self.paths)], 1)
            body = body.replace("{seq}", str(seq))
            head = head.replace("{seq}", str(seq))
            if now is not None:
                body = body.replace("{now}", now.isoformat().replace("+00:00", "Z"))
        data = body.encode()
        if data:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        return (head + "\r\n").encode() + data

    def _next_request(self) -> bytes:
        if self.fixed is not None:
            return self.fixed
        return self._render(next(self.seq), datetime.now(UTC))

    def _record(self, status: int, body: bytes, started: float) -> None:
        self.latencies.append(time.perf_counter() - started)
        self.received_bytes += len(body)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status >= 400 and self.sample_body is None:
            self.sample_body = body[:500].decode(errors="replace")

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Conn, self.host, self.port)
        return conn

    async def _reusable(self, conn: _Conn) -> _Conn:
        """`conn`, or a new connection if the server said it closes this one."""
        if not conn.server_closes:
            return conn
        conn.transport.close()
        self.reconnects += 1
        return await self._connect()

    async def closed_loop(self, connections: int, deadline: float, budget: list[int]) -> None:
        async def worker() -> None:
            conn = await self._connect()
            while time.perf_counter() < deadline and budget[0] != 0:
                budget[0] -= 1
                started = time.perf_counter()
                try:
                    status, body = await conn.request(self._next_request())
                except ConnectionError:
                    self.errors += 1
                    conn = await self._connect()
                    continue
                self._record(status, body, started)
                conn = await self._reusable(conn)
            conn.transport.close()

        await asyncio.gather(*(worker() for _ in range(connections)))

    async def open_loop(self, connections: int, rate: float, deadline: float,
                        budget: list[int]) -> None:
        idle: asyncio.Queue[_Conn] = asyncio.Queue()
        for _ in range(connections):
            idle.put_nowait(await self._connect())
        interval = 1.0 / rate
        pending: set[asyncio.Task] = set()
        self.late = 0

        async def one(scheduled: float) -> None:
            conn = await idle.get()  # waiting for a free connection counts as latency
            try:
                status, body = await conn.request(self._next_request())
                self._record(status, body, scheduled)
                idle.put_nowait(await self._reusable(conn))
            except ConnectionError:
                self.errors += 1
                idle.put_nowait(await self._connect())

        start = time.perf_counter()
        n = 0
        while budget[0] != 0:
            scheduled = start + n * interval
            if scheduled >= deadline:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                self.late += 1
            budget[0] -= 1
            task = asyncio.create_task(one(scheduled))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
        if pending:
            await asyncio.gather(*pending)

    async def main(self) -> dict:
        connections = int(self.spec.get("connections", 16))
        duration = float(self.spec.get("duration", 10))
        warmup = float(self.spec.get("warmup", 0))
        rate = float(self.spec.get("rate", 0))
        budget = [int(self.spec.get("requests", -1))]
        if warmup:
            await self.closed_loop(min(connections, 4), time.perf_counter() + warmup, [-1])
            self.statuses.clear()
            self.latencies.clear()
            self.errors = 0
            self.reconnects = 0
            self.received_bytes = 0
            self.sample_body = None
        started = time.perf_counter()
        deadline = started + duration
        if rate > 0:
            await self.open_loop(connections, rate, deadline, budget)
        else:
            await self.closed_loop(connections, deadline, budget)
        elapsed = time.perf_counter() - started
        lat = sorted(self.latencies)
        ok = sum(n for s, n in self.statuses.items() if 200 <= s < 300)
        return {
            "requests": len(lat),
            "ok": ok,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
            "reconnects": self.reconnects,
            "mean_answer_bytes": round(self.received_bytes / len(lat)) if lat else None,
            "elapsed_s": round(elapsed, 3),
            "rps": round(len(lat) / elapsed, 1) if elapsed else 0.0,
            "ok_rps": round(ok / elapsed, 1) if elapsed else 0.0,
            "p50_ms": round(_percentile(lat, 50) * 1000, 2) if lat else None,
            "p99_ms": round(_percentile(lat, 99) * 1000, 2) if lat else None,
            "max_ms": round(lat[-1] * 1000, 2) if lat else None,
            "late_starts": getattr(self, "late", 0),
            "sample_error_body": self.sample_body,
            "started_at": time.time() - elapsed,
        }


def main(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    print(json.dumps(asyncio.run(_Run(spec).main())), flush=True)


if __name__ == "__main__":
    main(sys.argv)
