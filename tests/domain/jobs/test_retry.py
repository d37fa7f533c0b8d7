"""Retry presets: capped exponential backoff with full jitter, Retry-After, and which errors
retry."""

import pytest

from domain.jobs.retry import (
    EXTERNAL_HTTP,
    NEVER,
    TRANSIENT,
)


@pytest.mark.parametrize("policy", [TRANSIENT, EXTERNAL_HTTP])
def test_backoff_is_capped_with_full_jitter(policy):
    for attempt in range(1, 30):
        delays = {policy.countdown(attempt) for _ in range(50)}
        assert all(0 <= d <= policy.backoff_max for d in delays)
    # full jitter: late attempts spread over the whole range, not one fixed value
    assert len({policy.countdown(20) for _ in range(200)}) > 10


def test_retry_after_is_honoured_and_capped():
    from domain.common.errors import TransientError

    assert TRANSIENT.countdown(1, TransientError("429", retry_after=7)) == 7
    assert TRANSIENT.countdown(1, TransientError("429", retry_after=10**6)) == TRANSIENT.backoff_max


def test_error_classification():
    from django.db import OperationalError

    from domain.common.errors import PermanentError, TransientError

    assert TRANSIENT.is_transient(TransientError("x"))
    assert TRANSIENT.is_transient(ConnectionError())
    assert TRANSIENT.is_transient(OperationalError())
    assert not TRANSIENT.is_transient(PermanentError("x"))
    assert not TRANSIENT.is_transient(ValueError())
    assert not NEVER.is_transient(ConnectionError())


def test_a_redis_that_cannot_take_writes_now_is_transient():
    import redis

    for error in (redis.exceptions.OutOfMemoryError, redis.exceptions.BusyLoadingError,
                  redis.exceptions.ReadOnlyError):
        assert TRANSIENT.is_transient(error("not now")), error
    assert not TRANSIENT.is_transient(redis.exceptions.ResponseError("WRONGTYPE"))
