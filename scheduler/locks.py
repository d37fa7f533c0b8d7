"""Overlap locks: a periodic job never runs twice at once, across every worker machine.

A Redis lock with a TTL (so a crashed holder frees it) taken without blocking: if another run
holds it, this run is skipped and says so. redis-py's Lock releases only its own token.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import redis

from domain.common.redis import redis_client, redis_key

logger = logging.getLogger(__name__)


def single_flight(name: str, *, ttl: int) -> Callable:
    """Run the wrapped function only if no other run of `name` holds the lock."""

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            lock = redis_client().lock(redis_key("lock", name), timeout=ttl, blocking=False)
            try:
                acquired = lock.acquire(blocking=False)
            except redis.exceptions.RedisError as exc:
                # Redis down, or refusing writes (out of memory): without the lock the run
                # could overlap another; skip it, the next tick tries again.
                logger.warning("skipped, the lock cannot be taken name=%s error=%r", name, exc)
                return {"skipped": "lock unavailable"}
            if not acquired:
                logger.info("skipped, another run holds the lock name=%s", name)
                return {"skipped": "locked"}
            try:
                return fn(*args, **kwargs)
            finally:
                try:
                    lock.release()
                except redis.exceptions.LockError:
                    # Held past its TTL and taken over: the other holder owns it now.
                    logger.warning("lock expired before release name=%s ttl=%s", name, ttl)
                except redis.exceptions.RedisError as exc:
                    # Redis went away meanwhile: the lock's TTL frees it.
                    logger.warning("lock not released name=%s error=%r", name, exc)

        return wrapper

    return decorator
