"""Per-endpoint rate limits shared by every worker: a sliding one-second window in Redis.

An endpoint with a rate of N messages a second never gets more than N sends in any window of
one second, however many workers deliver to it and however the sends bunch up (a token bucket
would let 2N through in a second that starts with a full bucket). The window is a sorted set
of send times per endpoint; one Lua call takes up to `wanted` slots at once against Redis's
own clock, so the workers' clocks do not matter, and answers how long until the next slot.

A slot counts from when its request went out, not from when it was granted (`sent`): between
the two a worker opens a connection, or waits for its turn on a busy core, for a few to a
hundred milliseconds, and a slot counted from its grant let the next second's requests reach
the receiver less than a second after that request (8 and 10 in one second at a 5/s limit,
tests/faults/test_webhook_faults.py). The slot is held from its grant until one second after
its request was written, plus WEBHOOK_RATE_MARGIN_SECONDS for the network and the
receiver's own scheduling.

Redis is also the broker: when it does not answer, deliveries could not be claimed either.
A Redis error here lets the sends through (logged once per outage), as the API's rate limiter.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from django.conf import settings

from domain.common.redis import redis_client, redis_key

logger = logging.getLogger(__name__)

# ARGV: rate, wanted, window (µs). A slot's score is when it started to count (its grant, then
# its send); it frees `window` after that.
_TAKE = """
local rate = tonumber(ARGV[1])
local wanted = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local granted = math.max(0, math.min(wanted, rate - used))
local seq = redis.call('INCR', KEYS[2])
local slots = {}
for i = 1, granted do
  slots[i] = tostring(now) .. ':' .. seq .. ':' .. i
  redis.call('ZADD', KEYS[1], now, slots[i])
end
local ttl = math.ceil(window / 1000) * 2
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
local wait = 0
if granted < wanted then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  wait = tonumber(oldest[2]) + window - now
end
return {granted, wait, slots}
"""

# ARGV: window (µs), then the slots whose requests were sent: each counts from now. A slot
# already freed (its request took longer than the window to go out) is counted again.
_SENT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1]) / 1000) * 2)
"""

_scripts: dict[str, Any] = {}
_script_lock = threading.Lock()
_failing = False


def _script(source: str) -> Any:
    with _script_lock:
        if source not in _scripts:
            _scripts[source] = redis_client().register_script(source)
        return _scripts[source]


def _window_us() -> int:
    return round((1 + settings.WEBHOOK_RATE_MARGIN_SECONDS) * 1_000_000)


def _key(endpoint_id: object) -> str:
    return redis_key("webhooks", "rate", endpoint_id)


def _redis_failed(exc: Exception) -> None:
    global _failing
    if not _failing:
        logger.error("webhook rate limit not counted (Redis unavailable): %r", exc)
        _failing = True


def take(endpoint_id: object, rate: int, wanted: int) -> tuple[list[str], float]:
    """Take up to `wanted` of the endpoint's sends in the current second: (the slots granted,
    to be passed to `sent` once their requests are written; seconds until the next one frees
    up). Without Redis every send is let through, with no slot to report."""
    global _failing
    if wanted <= 0:
        return [], 0.0
    try:
        granted, wait_us, slots = _script(_TAKE)(
            keys=[_key(endpoint_id), redis_key("webhooks", "rate-seq", endpoint_id)],
            args=[rate, wanted, _window_us()])
    except redis.exceptions.RedisError as exc:
        _redis_failed(exc)
        return [""] * wanted, 0.0
    if _failing:
        logger.warning("webhook rate limit counting again")
        _failing = False
    return [s.decode() if isinstance(s, bytes) else str(s) for s in slots][:int(granted)], \
        max(int(wait_us), 0) / 1_000_000


def sent(endpoint_id: object, slots: list[str]) -> None:
    """The requests of these slots went out: each counts from now, for a second (and the
    margin), instead of from its grant."""
    slots = [slot for slot in slots if slot]
    if not slots:
        return
    try:
        _script(_SENT)(keys=[_key(endpoint_id)], args=[_window_us(), *slots])
    except redis.exceptions.RedisError as exc:
        _redis_failed(exc)
