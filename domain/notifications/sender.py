"""Outbound webhook HTTP: many deliveries at once from one worker process.

One asyncio loop per process, in a thread of its own, with one aiohttp session (one pool of
keep-alive connections), sends whatever the process's tasks hand it: a task gives its batch
and waits for the outcomes, so a batch's deliveries travel concurrently and a slow receiver
holds only its own requests, never the others'. Concurrency is bounded per process
(WEBHOOK_MAX_IN_FLIGHT) and per endpoint (WEBHOOK_ENDPOINT_MAX_IN_FLIGHT).

Why not `requests` in Celery's prefork pool: each process would wait on one receiver at a time
(a receiver taking 10 s holds a process for 10 s), and a machine delivers a few dozen a second
(README "Webhooks: speed"). Why aiohttp and not httpx: its resolver is pluggable, which is
where the SSRF guard sits (the connection goes to the address the guard approved, with no
second lookup), and it is the faster client of the two on this machine.

The split of retries (README "Webhooks for operators"): tenacity retries a connection that
could not be opened (refused, reset before sending, a DNS failure) inside one attempt, for up
to WEBHOOK_CONNECT_RETRY_SECONDS; anything after the request went out (a timeout, a 5xx) ends
the attempt, and the job's retry policy spaces the next one (seconds, minutes, then hours).
Redirects are not followed: a 3xx is a permanent failure, as other 4xx.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from django.conf import settings
from django.utils import timezone
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_random

from domain.common.errors import PermanentError, TransientError
from domain.common.http import RETRY_LATER, retry_after_seconds
from domain.notifications import ratelimit, ssrf

logger = logging.getLogger(__name__)


@dataclass
class Send:
    key: Any  # the caller's (a delivery id)
    endpoint_id: Any
    url: str
    headers: dict[str, str]
    body: bytes
    rate_limit: int | None = None  # messages a second, shared by every worker


@dataclass
class SendResult:
    key: Any
    started_at: datetime
    latency_ms: int | None = None
    http_status: int | None = None
    excerpt: str = ""
    error: BaseException | None = None  # TransientError, PermanentError or EndpointGone
    error_type: str = ""  # the original error's class (the attempt shows it)
    error_message: str = ""
    deferred: float | None = None  # not sent: the rate limit frees a slot in this many seconds

    @property
    def delivered(self) -> bool:
        return self.error is None


class EndpointGone(PermanentError):
    """410 Gone: the receiver says this endpoint no longer exists; it is disabled."""


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, through the SSRF guard: the addresses returned are the only ones
    the connection may use, and each was checked (domain/notifications/ssrf.py)."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        addresses = await loop.run_in_executor(None, ssrf.checked_addresses, host, port)
        return [{"hostname": host, "host": address, "port": port,
                 "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST} for address in addresses]

    async def close(self) -> None:
        return None


def _connect_failed(exc: BaseException) -> bool:
    return isinstance(exc, aiohttp.ClientConnectorError)


class _Engine:
    """The process's loop thread and its session. Made on first use, again after a fork."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="webhook-sender", daemon=True)
        self.thread.start()
        self.ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        # No per-host cap in the connector: aiohttp's "host" is (host, port, TLS), which every
        # endpoint on one server shares (a customer's endpoints under different paths, a hook
        # relay's), so a per-host cap of WEBHOOK_ENDPOINT_MAX_IN_FLIGHT held all of them to one
        # endpoint's share. Each endpoint has its own bound (`_endpoint_slots`), the process
        # its total (`limit`).
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(), limit=settings.WEBHOOK_MAX_IN_FLIGHT, limit_per_host=0,
            ttl_dns_cache=10, enable_cleanup_closed=True)
        # A rate-limited request's slot counts from when its request went out (ratelimit.py).
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(_slot_sent)
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",),
            trace_configs=[trace])
        self.in_flight = asyncio.Semaphore(settings.WEBHOOK_MAX_IN_FLIGHT)
        self.per_endpoint: dict[Any, asyncio.Semaphore] = {}

    def run(self, sends: Sequence[Send]) -> list[SendResult]:
        return [future.result() for future in self.submit(sends)]

    def submit(self, sends: Sequence[Send]) -> list[Future]:
        """Start every send; a future per send, in the order given, resolved with its
        SendResult as soon as that one is done (one hand-over to the loop for them all)."""
        futures = [Future() for _ in sends]
        asyncio.run_coroutine_threadsafe(self._send_into(sends, futures), self.loop)
        return futures

    async def _send_into(self, sends: Sequence[Send], futures: list[Future]) -> None:
        async def one(send: Send, future: Future) -> None:
            future.set_result(await self._send(send))

        await asyncio.gather(*(one(s, f) for s, f in zip(sends, futures, strict=True)))

    def _endpoint_slots(self, endpoint_id: Any) -> asyncio.Semaphore:
        slots = self.per_endpoint.get(endpoint_id)
        if slots is None:
            slots = self.per_endpoint[endpoint_id] = asyncio.Semaphore(
                settings.WEBHOOK_ENDPOINT_MAX_IN_FLIGHT)
        return slots

    async def _send(self, send: Send) -> SendResult:
        async with self._endpoint_slots(send.endpoint_id), self.in_flight:
            slots: list[str] = []
            if send.rate_limit:
                slots, wait = await self._rate_slot(send)
                if not slots:
                    return SendResult(key=send.key, started_at=timezone.now(), deferred=wait)
            started = time.perf_counter()
            result = SendResult(key=send.key, started_at=timezone.now())
            try:
                await self._post(send, result, (send.endpoint_id, slots) if slots else None)
            except Exception as exc:  # noqa: BLE001 - every failure is an attempt's outcome
                _record_error(result, exc)
            result.latency_ms = round((time.perf_counter() - started) * 1000)
            return result

    async def _rate_slot(self, send: Send) -> tuple[list[str], float]:
        """Wait for a slot of the endpoint's rate (shared through Redis) for up to
        WEBHOOK_RATE_WAIT_SECONDS: (the slot, 0) once it has one, or ([], the seconds still to
        wait)."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + settings.WEBHOOK_RATE_WAIT_SECONDS
        while True:
            slots, wait = await loop.run_in_executor(
                None, ratelimit.take, send.endpoint_id, send.rate_limit, 1)
            if slots:
                return slots, 0.0
            if time.monotonic() + wait > deadline:
                return [], wait
            await asyncio.sleep(wait)

    async def _post(self, send: Send, result: SendResult,
                    slot: tuple[Any, list[str]] | None = None) -> None:
        host, literal = _url_host(send.url)
        if literal:
            # aiohttp connects to an address given literally without asking the resolver.
            _literal_allowed(host, tuple(settings.WEBHOOK_ALLOWED_NETWORKS))
        started = time.monotonic()
        try:
            await self._post_once(send, result, slot)
            return
        except aiohttp.ClientConnectorError as exc:
            first_failure: BaseException | None = exc
        # A connection that could not be opened (refused, reset before sending, a DNS failure)
        # is tried again within the same attempt, until WEBHOOK_CONNECT_RETRY_SECONDS from the
        # first try. Tenacity takes over only here: set up for every request, it was a sixth
        # of the sender loop's time (py-spy, bench webhooks). The first try's failure is its
        # first attempt's outcome, so it waits before the second as if it had made the first.
        budget = settings.WEBHOOK_CONNECT_RETRY_SECONDS - (time.monotonic() - started)
        async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(aiohttp.ClientConnectorError),
                stop=stop_after_delay(max(budget, 0)), wait=wait_random(0.05, 0.5),
                reraise=True):
            with attempt:
                if first_failure is not None:
                    failure, first_failure = first_failure, None
                    raise failure
                await self._post_once(send, result, slot)

    async def _post_once(self, send: Send, result: SendResult,
                         slot: tuple[Any, list[str]] | None) -> None:
        async with self.session.post(send.url, data=send.body, headers=send.headers,
                                     allow_redirects=False, timeout=_timeout(),
                                     trace_request_ctx=slot) as response:
            result.http_status = response.status
            excerpt = await response.content.read(settings.WEBHOOK_RESPONSE_EXCERPT_BYTES)
            result.excerpt = excerpt.decode("utf-8", "replace")
            _judge(response.status, response.headers)


@lru_cache(maxsize=4096)
def _url_host(url: str) -> tuple[str, bool]:
    """The URL's host, and whether it is an address given literally."""
    host = urlsplit(url).hostname or ""
    return host, _is_ip(host)


@lru_cache(maxsize=1024)
def _literal_allowed(host: str, allowed_networks: tuple[str, ...]) -> bool:
    """The SSRF guard's verdict on a literal address under the allowed networks in force
    (the key, so a changed setting is a new question). A refusal raises, and is not kept."""
    ssrf.checked_addresses(host, 0)
    return True


async def _slot_sent(session: aiohttp.ClientSession, context: Any,
                     params: aiohttp.TraceRequestHeadersSentParams) -> None:
    """The request is going out: its rate slot counts from now (ratelimit.sent, in a thread,
    not awaited: the body is written meanwhile, and a later stamp only counts it longer)."""
    slot = context.trace_request_ctx
    if slot:
        asyncio.get_running_loop().run_in_executor(None, ratelimit.sent, *slot)


def _timeout() -> aiohttp.ClientTimeout:
    # Read per request, so a changed setting applies without a new session.
    return aiohttp.ClientTimeout(total=None, sock_connect=settings.WEBHOOK_CONNECT_TIMEOUT,
                                 sock_read=settings.WEBHOOK_READ_TIMEOUT)


def _is_ip(host: str) -> bool:
    try:
        import ipaddress

        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _judge(status: int, headers: Any) -> None:
    if 200 <= status < 300:
        return
    if status == 410:
        raise EndpointGone("the receiver answered 410 Gone")
    if status in RETRY_LATER or status >= 500:
        raise TransientError(f"the receiver answered {status}",
                             retry_after=retry_after_seconds(headers.get("Retry-After")))
    raise PermanentError(f"the receiver answered {status}" +
                         (" (redirects are not followed)" if 300 <= status < 400 else ""))


def _record_error(result: SendResult, exc: BaseException) -> None:
    result.error_type = type(exc).__name__
    result.error_message = str(exc)[:2000] or repr(exc)
    if isinstance(exc, (TransientError, PermanentError)):
        result.error = exc
    elif isinstance(exc, (aiohttp.ClientError, OSError, asyncio.TimeoutError)):
        # Timeouts, refused or reset connections, a receiver gone mid-answer: try later.
        result.error = TransientError(f"{result.error_type}: {result.error_message}")
    else:
        result.error = PermanentError(f"{result.error_type}: {result.error_message}")


_engine: _Engine | None = None
_engine_lock = threading.Lock()


def engine() -> _Engine:
    global _engine
    with _engine_lock:
        if _engine is None or _engine.pid != os.getpid() or not _engine.thread.is_alive():
            _engine = _Engine()
        return _engine


def send_all(sends: Sequence[Send]) -> list[SendResult]:
    """Send every request concurrently; answer each one's outcome, in the order given."""
    if not sends:
        return []
    return engine().run(sends)


def send_each(sends: Sequence[Send]) -> list[Future]:
    """Send every request concurrently; a future of each one's outcome, in the order given,
    resolved as soon as it is done (a slow receiver does not hold the others' answers)."""
    if not sends:
        return []
    return engine().submit(sends)


__all__ = ["EndpointGone", "Send", "SendResult", "send_all", "send_each"]
