"""One Redis client for the project's own keys (overlap locks, rate limits) in REDIS_URL."""

from __future__ import annotations

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    global _client
    if _client is None:
        # Fail fast: redis-py's default retries with backoff would stall every request for
        # seconds while Redis is down; callers decide what a failure means (the rate limiter
        # lets the request through, a lock skips the run).
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2,
                                       socket_timeout=5, retry=Retry(NoBackoff(), 0))
    return _client


def redis_key(*parts: object) -> str:
    return settings.REDIS_KEY_PREFIX + ":".join(str(p) for p in parts)
