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


# Celery on Redis needs noeviction: under any other policy a full Redis drops keys, queue
# lists included, and the messages in them with no error anywhere.
# https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#caveats
BROKER_MAXMEMORY_POLICY = "noeviction"


def broker_problems(client: redis.Redis) -> list[str]:
    """What is wrong with a broker Redis that answers: a maxmemory policy that evicts keys,
    or no room for a write (out of memory). An empty list: nothing. A Redis that hides CONFIG
    (some managed services) is not judged on its policy."""
    problems = []
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.exceptions.ResponseError:
        policy = None
    if policy and policy != BROKER_MAXMEMORY_POLICY:
        problems.append(f"maxmemory-policy is {policy}; the broker needs "
                        f"{BROKER_MAXMEMORY_POLICY} (an evicting Redis drops queued messages)")
    try:
        client.set("conveyor:probe", "1", ex=10)
    except redis.exceptions.OutOfMemoryError:
        problems.append("out of memory")  # the words issue 10 asks /readyz to say
    except (redis.exceptions.ReadOnlyError, redis.exceptions.BusyLoadingError) as exc:
        problems.append(f"writes are refused: {exc}")
    return problems
