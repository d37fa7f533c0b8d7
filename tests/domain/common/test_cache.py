"""domain.common.cache: versioned namespaces and invalidation, against the real Redis cache."""

from __future__ import annotations

import time

import pytest
import redis
from django.core.cache import cache

from domain.common.cache import (
    cache_invalidate,
    generation_and_value,
    namespace_bump,
    namespace_version,
    namespaced_key,
)

NS = "test:ns"


def version_in_cache(namespace: str):
    return cache.get(f"nsver:{namespace}")


def test_namespace_version_is_stable_until_bumped():
    # given a namespace nobody has used yet
    assert version_in_cache(NS) is None

    # when its version is read several times
    first = namespace_version(NS)
    again = [namespace_version(NS) for _ in range(5)]

    # then it is created once, stored, and the same every time
    assert isinstance(first, int) and first > 0
    assert again == [first] * 5
    assert version_in_cache(NS) == first


def test_a_fresh_version_is_based_on_the_current_time():
    # given the clock before and after the first read
    before = time.time_ns()
    version = namespace_version(NS)
    after = time.time_ns()

    # then the version lies between them
    assert before <= version <= after


def test_namespaced_key_embeds_the_version():
    # when a key is built under a namespace
    key = namespaced_key(NS, "page:1")

    # then it carries the namespace, its current version and the suffix
    assert key == f"{NS}:v{namespace_version(NS)}:page:1"
    assert namespaced_key(NS, "page:1") == key


def test_bump_changes_the_version_and_the_keys():
    # given a version and a key built under it, with a value cached there
    old_version = namespace_version(NS)
    old_key = namespaced_key(NS, "page:1")
    cache.set(old_key, "stale")

    # when the namespace is bumped
    bumped = namespace_bump(NS)

    # then the version grows, reads agree with the bump, and the key is a new one
    assert bumped > old_version
    assert namespace_version(NS) == bumped == version_in_cache(NS)
    new_key = namespaced_key(NS, "page:1")
    assert new_key != old_key
    assert new_key == f"{NS}:v{bumped}:page:1"
    assert cache.get(new_key) is None
    # the old entry is orphaned, not deleted: it expires on its own TTL
    assert cache.get(old_key) == "stale"


def test_bumps_are_strictly_increasing():
    # when a namespace is bumped several times
    versions = [namespace_version(NS)] + [namespace_bump(NS) for _ in range(5)]

    # then every bump hands out a larger version
    assert versions == sorted(set(versions))


def test_bump_of_a_namespace_without_a_version_starts_one():
    # given a namespace that has no version yet
    assert version_in_cache(NS) is None
    before = time.time_ns()

    # when it is bumped
    bumped = namespace_bump(NS)

    # then a version is created and stored (larger than the clock before the call)
    assert bumped > before
    assert namespace_version(NS) == bumped


def test_a_lost_version_restarts_above_every_version_handed_out_before():
    # given a namespace that has handed out several versions
    handed_out = [namespace_version(NS)] + [namespace_bump(NS) for _ in range(50)]
    old_keys = {namespaced_key(NS, "page:1")}

    # when its version key disappears (evicted, or Redis restarted) and it is read again
    cache.delete(f"nsver:{NS}")
    assert version_in_cache(NS) is None
    restarted = namespace_version(NS)

    # then the new version is larger than every one before, so no old key comes back
    assert restarted > max(handed_out)
    assert namespaced_key(NS, "page:1") not in old_keys


def test_a_lost_version_then_bumped_is_also_larger():
    # given a namespace that has handed out versions
    handed_out = [namespace_version(NS), namespace_bump(NS), namespace_bump(NS)]

    # when its version key disappears and the next operation is a bump
    cache.delete(f"nsver:{NS}")
    bumped = namespace_bump(NS)

    # then the bump is above everything handed out before
    assert bumped > max(handed_out)
    assert namespace_version(NS) == bumped


def test_namespaces_are_independent():
    # given two namespaces
    a = namespace_version("test:a")
    b = namespace_version("test:b")

    # when one is bumped
    namespace_bump("test:a")

    # then the other keeps its version
    assert namespace_version("test:a") > a
    assert namespace_version("test:b") == b


def test_cache_invalidate_deletes_keys_and_bumps_namespaces():
    # given cached keys, an unrelated key, and a namespace with a cached page
    cache.set("k:1", 1)
    cache.set("k:2", 2)
    cache.set("k:keep", 3)
    old_version = namespace_version(NS)
    old_page = namespaced_key(NS, "page")
    cache.set(old_page, "page")

    # when they are invalidated (with a duplicate key and namespace)
    result = cache_invalidate(keys=["k:1", "k:2", "k:1", "k:missing"], namespaces=[NS, NS])

    # then the keys are gone, the unrelated key stays, and the namespace moved on
    assert cache.get("k:1") is None and cache.get("k:2") is None
    assert cache.get("k:keep") == 3
    new_version = namespace_version(NS)
    assert new_version > old_version
    assert namespaced_key(NS, "page") != old_page
    assert cache.get(namespaced_key(NS, "page")) is None

    # and the result says what was done, each name once
    assert result == {"keys_deleted": ["k:1", "k:2", "k:missing"],
                      "namespaces_bumped": {NS: new_version}}


def test_cache_invalidate_with_nothing_does_nothing():
    # given a cached key and a namespace version
    cache.set("k:1", 1)
    version = namespace_version(NS)

    # when invalidate is called with nothing
    result = cache_invalidate()
    result_empty = cache_invalidate(keys=[], namespaces=[])

    # then nothing changed
    assert result == result_empty == {"keys_deleted": [], "namespaces_bumped": {}}
    assert cache.get("k:1") == 1
    assert namespace_version(NS) == version


def test_cache_invalidate_twice_is_harmless():
    # given a cached key and a namespace
    cache.set("k:1", 1)
    v0 = namespace_version(NS)

    # when the same invalidation runs twice (a redelivered job)
    first = cache_invalidate(keys=["k:1"], namespaces=[NS])
    cache.set(namespaced_key(NS, "page"), "refilled between the two runs")
    second = cache_invalidate(keys=["k:1"], namespaces=[NS])

    # then both succeed: the key stays gone and the namespace is just empty again
    assert first["keys_deleted"] == second["keys_deleted"] == ["k:1"]
    v1, v2 = first["namespaces_bumped"][NS], second["namespaces_bumped"][NS]
    assert v0 < v1 < v2
    assert cache.get("k:1") is None
    assert namespace_version(NS) == v2
    assert cache.get(namespaced_key(NS, "page")) is None


def test_cache_invalidate_starts_a_lost_version_above_the_clock_in_one_round_trip():
    # given a namespace whose version was lost (evicted, or Redis restarted empty)
    before = time.time_ns()
    cache.delete(f"nsver:{NS}")

    # when it is invalidated (the pipelined path: SET NX, then INCR)
    result = cache_invalidate(namespaces=[NS])

    # then its version restarts above the clock and readers see the same number
    assert result["namespaces_bumped"][NS] > before
    assert namespace_version(NS) == result["namespaces_bumped"][NS]


def test_cache_invalidate_through_the_plain_cache_api_gives_the_same_result(monkeypatch):
    # given a cache backend the pipeline cannot reach (any backend but RedisCache)
    from domain.common import cache as cache_module

    monkeypatch.setattr(cache_module, "_redis_client", lambda: None)
    cache.set("k:1", 1)
    v0 = namespace_version(NS)

    # when it is invalidated, then keys go and the namespace moves on, as with the pipeline
    result = cache_invalidate(keys=["k:1"], namespaces=[NS])
    assert cache.get("k:1") is None
    assert result["namespaces_bumped"][NS] == namespace_version(NS) > v0


def test_cache_invalidate_with_redis_down_raises_a_connection_error(settings):
    # given a cache whose Redis does not answer
    settings.CACHES = {"default": {**settings.CACHES["default"],
                                   "LOCATION": "redis://127.0.0.1:1/0"}}
    # when a job invalidates, then the error is a connection error (the retry policy's
    # transient class), not a silent success
    with pytest.raises(redis.exceptions.ConnectionError):
        cache_invalidate(keys=["k:1"], namespaces=[NS])


def test_generation_and_value_read_together_start_a_missing_version_and_survive_no_redis(
        settings):
    # given a value stored under a namespace's current version
    version = namespace_version(NS)
    cache.set("k:gen", {"generation": version})

    # then both come back in one read, and a bump shows as a new version
    assert generation_and_value(NS, "k:gen") == (version, {"generation": version})
    assert generation_and_value(NS, "k:gen")[0] < namespace_bump(NS)

    # and a namespace without a version gets one started (never below the clock)
    before = time.time_ns()
    started, missing = generation_and_value("test:ns:new", "k:none")
    assert started >= before and missing is None and version_in_cache("test:ns:new") == started

    # and with Redis down, the reader is told to read through (nothing raised)
    settings.CACHES = {"default": {**settings.CACHES["default"],
                                   "LOCATION": "redis://127.0.0.1:1/0"}}
    assert generation_and_value(NS, "k:gen") == (None, None)
