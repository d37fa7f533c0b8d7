"""Overlap locks: a periodic job never runs twice at once, across every worker machine.

A Redis lock with a TTL (so a crashed holder frees it) taken without blocking: if another run
holds it, this run is skipped and says so (the ledger records the slot `skipped: overlap`).
redis-py's Lock releases only its own token.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Literal

import redis

from domain.common.redis import redis_client, redis_key

logger = logging.getLogger(__name__)

LockState = Literal["held", "locked", "unavailable"]


@contextlib.contextmanager
def overlap_lock(name: str, *, ttl: int) -> Iterator[LockState]:
    """Yield "held" if this run took the lock, "locked" if another run holds it, and
    "unavailable" if Redis could not be asked; the body runs only for "held"."""
    lock = redis_client().lock(redis_key("lock", name), timeout=ttl, blocking=False)
    try:
        acquired = lock.acquire(blocking=False)
    except redis.exceptions.RedisError as exc:
        # Redis down, or refusing writes (out of memory): without the lock the run could
        # overlap another; skip it, the next slot tries again.
        logger.warning("skipped, the lock cannot be taken name=%s error=%r", name, exc)
        yield "unavailable"
        return
    if not acquired:
        logger.info("skipped, another run holds the lock name=%s", name)
        yield "locked"
        return
    try:
        yield "held"
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            # Held past its TTL and taken over: the other holder owns it now.
            logger.warning("lock expired before release name=%s ttl=%s", name, ttl)
        except redis.exceptions.RedisError as exc:
            # Redis went away meanwhile: the lock's TTL frees it.
            logger.warning("lock not released name=%s error=%r", name, exc)
