"""Per-API-key rate limits, counted in Redis.

Written here rather than using DRF's SimpleRateThrottle: that one keeps a list of every
request's timestamp in one cache value and rewrites it on each request (a get and a set, not
atomic). At the rates this API serves — thousands a minute per key — the list is large, is
re-serialized on every request, and concurrent requests overwrite each other's entries and
overshoot the limit. Here each request is one atomic INCR on a fixed-window counter.

A process does not count each request in Redis, though: it takes a share of the window's
budget at a time (`_Allowances`: one INCRBY for up to 1% of the limit, at most
API_THROTTLE_LEASE_MAX requests) and spends it locally, so a key publishing hundreds of times a
second costs one Redis round trip per share, not per request. Shares are counted in Redis before
they are spent, so the limit is never exceeded; what a process holds unspent when the window
ends is lost, so a key can get up to one share per process less than its limit. Limits under
200 per period get shares of one: every request is counted, as before.

If Redis fails in any way (down, timing out, or refusing writes when full: OOM), requests are
let through: a publish must not fail because the limiter is unavailable (the outbox makes it
durable without Redis). The log says so once when the limiter stops counting and once when it
counts again, not on every request in between.
"""

from __future__ import annotations

import logging
import threading
import time
from time import monotonic  # outages are timed on this clock, windows on wall time

import redis
from django.conf import settings
from rest_framework.throttling import BaseThrottle

from domain.common.redis import redis_client, redis_key

logger = logging.getLogger(__name__)
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class LimiterOutage:
    """Whether the limiter's Redis is failing in this process, so that an outage is logged
    where it starts and where it ends: at thousands of requests a second a line per request
    would bury everything else in the log. A Redis at its memory limit refuses some writes and
    accepts others as memory comes and goes; the outage ends only after `quiet_seconds`
    without a failure, so that flapping is one outage, not one per flip."""

    def __init__(self, quiet_seconds: float = 5.0) -> None:
        self.quiet_seconds = quiet_seconds
        self.down = False
        self.last_failure = 0.0
        self._lock = threading.Lock()

    def failed(self, exc: Exception) -> None:
        with self._lock:
            self.last_failure = monotonic()
            if self.down:
                return
            self.down = True
        logger.warning("rate limiter unavailable, requests are let through uncounted until "
                       "Redis answers again error=%r", exc)

    def succeeded(self) -> None:
        if not self.down:  # the common case, without the lock
            return
        with self._lock:
            if not self.down or monotonic() - self.last_failure < self.quiet_seconds:
                return
            self.down = False
        logger.warning("rate limiter available again, requests are counted")


outage = LimiterOutage()


def parse_rate(rate: str) -> tuple[int, int]:
    """"600/m" -> (600, 60). Same notation as DRF's throttle rates."""
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip()[0]]


def lease_size(limit: int) -> int:
    """How many requests of a window one process takes from Redis at a time."""
    return max(1, min(settings.API_THROTTLE_LEASE_MAX, limit // 100))


class _Allowances:
    """What this process may still spend, per (scope, key, period) in the current window."""

    def __init__(self) -> None:
        self._left: dict[tuple, tuple[int, int]] = {}  # (scope, key, period) -> (window, left)
        self._lock = threading.Lock()

    def spend(self, slot: tuple, window: int) -> bool:
        with self._lock:
            held = self._left.get(slot)
            if held is None or held[0] != window or held[1] <= 0:
                return False
            self._left[slot] = (window, held[1] - 1)
            return True

    def add(self, slot: tuple, window: int, count: int) -> None:
        with self._lock:
            held = self._left.get(slot)
            left = held[1] if held is not None and held[0] == window else 0
            if len(self._left) > 100_000:  # old windows' entries, never read again
                self._left.clear()
            self._left[slot] = (window, left + count)


allowances = _Allowances()


class ApiKeyRateThrottle(BaseThrottle):
    """Views declare `throttle_scope` ("publish", "read", "write") or a dict by method;
    rates come from settings.API_THROTTLE_RATES."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def _scope(self, request, view) -> str | None:
        scope = getattr(view, "throttle_scope", None)
        if isinstance(scope, dict):
            method = "GET" if request.method in ("HEAD", "OPTIONS") else request.method
            return scope.get(method)
        return scope

    def allow_request(self, request, view) -> bool:
        scope = self._scope(request, view)
        rate = settings.API_THROTTLE_RATES.get(scope) if scope else None
        if not rate or request.auth is None:
            return True
        limit, period = parse_rate(rate)
        now = time.time()
        window = int(now // period)
        slot = (scope, request.auth.pk, period)
        if allowances.spend(slot, window):
            return True
        share = lease_size(limit)
        key = redis_key("throttle", scope, request.auth.pk, period, window)
        try:
            pipe = redis_client().pipeline(transaction=False)
            pipe.set(key, 0, ex=period + 1, nx=True)
            pipe.incrby(key, share)
            _, count = pipe.execute()
        except redis.exceptions.RedisError as exc:  # OutOfMemoryError and ResponseError too
            outage.failed(exc)
            return True
        outage.succeeded()
        granted = min(share, limit - (count - share))  # the part of this share within the limit
        if granted <= 0:
            self._wait = (window + 1) * period - now
            return False
        if granted > 1:
            allowances.add(slot, window, granted - 1)  # this request spends one
        return True

    def wait(self) -> float | None:
        return self._wait
