"""Per-endpoint rate limits shared by every worker: a sliding one-second window in Redis.

An endpoint with a rate of N messages a second never gets more than N sends in any window of
one second, however many workers deliver to it and however the sends bunch up (a token bucket
would let 2N through in a second that starts with a full bucket). The window is a sorted set
of send times per endpoint; one Lua call takes up to `wanted` slots at once against Redis's
own clock, so the workers' clocks do not matter, and answers how long until the next slot.

Redis is also the broker: when it does not answer, deliveries could not be claimed either.
A Redis error here lets the sends through (logged once per outage), as the API's rate limiter.
"""

from __future__ import annotations

import logging
import threading

import redis

from domain.common.redis import redis_client, redis_key

logger = logging.getLogger(__name__)

_TAKE = """
local rate = tonumber(ARGV[1])
local wanted = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 1000000)
local used = redis.call('ZCARD', KEYS[1])
local granted = math.max(0, math.min(wanted, rate - used))
local seq = redis.call('INCR', KEYS[2])
for i = 1, granted do
  redis.call('ZADD', KEYS[1], now, tostring(now) .. ':' .. seq .. ':' .. i)
end
redis.call('PEXPIRE', KEYS[1], 2000)
redis.call('PEXPIRE', KEYS[2], 2000)
local wait = 0
if granted < wanted then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  wait = tonumber(oldest[2]) + 1000000 - now
end
return {granted, wait}
"""

_script = None
_script_lock = threading.Lock()
_failing = False


def take(endpoint_id: object, rate: int, wanted: int) -> tuple[int, float]:
    """Take up to `wanted` of the endpoint's sends in the current second: (how many were
    granted, seconds until the next one frees up)."""
    global _script, _failing
    if wanted <= 0:
        return 0, 0.0
    with _script_lock:
        if _script is None:
            _script = redis_client().register_script(_TAKE)
    try:
        granted, wait_us = _script(keys=[redis_key("webhooks", "rate", endpoint_id),
                                         redis_key("webhooks", "rate-seq", endpoint_id)],
                                   args=[rate, wanted])
    except redis.exceptions.RedisError as exc:
        if not _failing:
            logger.error("webhook rate limit not counted (Redis unavailable): %r", exc)
            _failing = True
        return wanted, 0.0
    if _failing:
        logger.warning("webhook rate limit counting again")
        _failing = False
    return int(granted), max(int(wait_us), 0) / 1_000_000
