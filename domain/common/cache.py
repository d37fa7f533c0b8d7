"""Versioned cache namespaces: O(1) invalidation of every key built under a namespace.

A namespace's version is a number stored in the cache; keys built under it embed the version.
Bumping the version orphans every old key at once (they expire on their own TTL). A missing
version (evicted, or a fresh Redis) restarts from the current time in nanoseconds, which is
larger than any version handed out before, so an old page can never come back to life.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from django.core.cache import cache

logger = logging.getLogger(__name__)
# Any Redis failure, not only a lost connection: a full Redis (OOM under noeviction), one
# loading its data or a read-only replica answer with error replies, and a reader can do
# without the cache in every case.
CACHE_ERRORS = (redis.exceptions.RedisError,)


def cache_get(key: str) -> Any:
    """`cache.get` for readers that can do without the cache: None when it is down."""
    try:
        return cache.get(key)
    except CACHE_ERRORS as exc:
        logger.warning("cache unavailable, reading through key=%s error=%r", key, exc)
        return None


def cache_set(key: str, value: Any, timeout: int) -> None:
    try:
        cache.set(key, value, timeout)
    except CACHE_ERRORS as exc:
        logger.warning("cache unavailable, not stored key=%s error=%r", key, exc)


def _version_key(namespace: str) -> str:
    return f"nsver:{namespace}"


def namespace_version(namespace: str) -> int:
    key = _version_key(namespace)
    version = cache.get(key)
    if version is None:
        version = time.time_ns()
        if not cache.add(key, version, timeout=None):
            version = cache.get(key, version)
    return int(version)


def generation_and_value(namespace: str, key: str) -> tuple[int | None, Any]:
    """A namespace's version and a key's value in one round trip (one MGET), for a value that
    carries the version it was stored under instead of embedding it in its key; (None, None)
    when the cache is down."""
    try:
        found = cache.get_many([_version_key(namespace), key])
        version = found.get(_version_key(namespace))
        if version is None:  # none yet (evicted, a fresh Redis): start one, as namespace_version
            version = namespace_version(namespace)
        return int(version), found.get(key)
    except CACHE_ERRORS as exc:
        logger.warning("cache unavailable, reading through key=%s error=%r", key, exc)
        return None, None


def namespaced_key(namespace: str, suffix: str) -> str:
    return f"{namespace}:v{namespace_version(namespace)}:{suffix}"


def namespaced_key_or_none(namespace: str, suffix: str) -> str | None:
    """The versioned key, or None when the cache is down (then read and store nothing)."""
    try:
        return namespaced_key(namespace, suffix)
    except CACHE_ERRORS as exc:
        logger.warning("cache unavailable namespace=%s error=%r", namespace, exc)
        return None


def namespace_bump(namespace: str) -> int:
    key = _version_key(namespace)
    try:
        return int(cache.incr(key))
    except ValueError:  # no version yet: start one (see the module docstring)
        cache.add(key, time.time_ns(), timeout=None)
        return int(cache.incr(key))


def cache_invalidate(*, keys: list[str] | None = None,
                     namespaces: list[str] | None = None) -> dict:
    """Drop keys and bump namespaces. Both are idempotent in effect: a repeat changes nothing
    a reader could tell apart (keys stay gone; a bumped namespace is just empty again)."""
    keys = list(dict.fromkeys(keys or []))
    namespaces = list(dict.fromkeys(namespaces or []))
    client = _redis_client()
    if client is None:  # another cache backend: its own API, a round trip per operation
        if keys:
            cache.delete_many(keys)
        versions = {ns: namespace_bump(ns) for ns in namespaces}
    else:
        versions = _invalidate_pipelined(client, keys, namespaces)
    return {"keys_deleted": keys, "namespaces_bumped": versions}


def _redis_client() -> redis.Redis | None:
    """The Redis client behind Django's RedisCache, for pipelining.

    Django's cache API has no pipeline, and its `incr` is two round trips (EXISTS, INCRBY): an
    invalidation of one key and two namespaces took five, most of a cache-invalidation job's
    time (bench/). `_cache` is RedisCache's own client wrapper; if a Django release renames
    it, this returns None and the plain API is used.
    """
    wrapper = getattr(cache, "_cache", None)
    get_client = getattr(wrapper, "get_client", None)
    return get_client(write=True) if get_client else None


def _invalidate_pipelined(client: redis.Redis, keys: list[str],
                          namespaces: list[str]) -> dict[str, int]:
    """One round trip: DEL the keys; per namespace, start a missing version at the current time
    in nanoseconds (as namespace_bump does) and INCR it. Integers are stored raw by Django's
    Redis serializer, so cache.get reads these versions back as ints."""
    pipe = client.pipeline(transaction=False)
    if keys:
        pipe.delete(*(cache.make_and_validate_key(k) for k in keys))
    for namespace in namespaces:
        version_key = cache.make_and_validate_key(_version_key(namespace))
        pipe.set(version_key, time.time_ns(), nx=True)
        pipe.incr(version_key)
    replies = pipe.execute()
    bumped = replies[1 if keys else 0:][1::2]
    return {ns: int(v) for ns, v in zip(namespaces, bumped, strict=True)}
