"""Retry policies as named presets. Every task gets one: through its job kind, or directly.

They live in the domain, below the worker runtime, because the domain decides what a failure
means (domain/jobs/lifecycle.py, job_failed); the worker only carries the decision out.

The mechanics are Celery's: `Task.retry(countdown=...)` re-publishes the message and Celery's
own `get_exponential_backoff_interval` computes capped exponential backoff with full jitter.
What Celery does not have is a per-exception split between "retry" and "fail at once", and a
record of it in our Job rows; the preset carries that split.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import kombu.exceptions
import redis.exceptions
from celery.utils.time import get_exponential_backoff_interval
from django.db import OperationalError as DatabaseOperationalError

from domain.common.errors import TransientError

# Errors that say "the other side is unavailable right now", not "your request is wrong".
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    # Redis is there but cannot take the write now: full (OOM under noeviction), loading its
    # data after a restart, or a replica after a failover.
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    kombu.exceptions.OperationalError,
    DatabaseOperationalError,
)

# Countdowns above this are not handed to the broker as ETAs: Redis would redeliver them after
# the visibility timeout (Celery's long-ETA duplication problem). Longer waits (a large
# Retry-After, a slow custom policy) are kept in the job row and sent by the outbox relay.
MAX_BROKER_COUNTDOWN = 15 * 60


@dataclass(frozen=True)
class RetryPolicy:
    name: str
    max_attempts: int
    backoff_factor: int = 1  # seconds; the n-th retry waits up to factor * 2**n
    backoff_max: int = 600  # seconds, the cap
    retry_on: tuple[type[BaseException], ...] = field(default=TRANSIENT_ERRORS)
    # A fixed schedule instead of exponential backoff: after the n-th failed attempt, wait
    # the n-th figure, scaled by a random factor within ±`jitter` (webhooks: seconds, then
    # minutes, then hours). Built with `RetryPolicy.scheduled`.
    schedule: tuple[int, ...] = ()
    jitter: float = 0.0

    @classmethod
    def scheduled(cls, name: str, schedule: Sequence[int], *, jitter: float = 0.1,
                  retry_on: tuple[type[BaseException], ...] = TRANSIENT_ERRORS) -> RetryPolicy:
        """A policy of len(schedule) + 1 attempts spaced by `schedule` (seconds)."""
        if not schedule or any(s < 0 for s in schedule):
            raise ValueError(f"retry policy {name!r}: the schedule needs non-negative figures")
        return cls(name, max_attempts=len(schedule) + 1, backoff_max=max(schedule),
                   retry_on=retry_on, schedule=tuple(schedule), jitter=jitter)

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, self.retry_on)

    def countdown(self, attempts: int, exc: BaseException | None = None) -> int:
        """Seconds before the next attempt; honours a server's Retry-After when it is given."""
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return int(min(max(retry_after, 0), self.backoff_max))
        if self.schedule:
            base = self.schedule[min(max(attempts, 1), len(self.schedule)) - 1]
            spread = random.uniform(1 - self.jitter, 1 + self.jitter)  # noqa: S311 - jitter
            return max(round(base * spread), 0)
        return get_exponential_backoff_interval(
            factor=self.backoff_factor,
            retries=max(attempts - 1, 0),
            maximum=self.backoff_max,
            full_jitter=True,
        )


# Internal work against our own Redis/PostgreSQL: quick, several tries.
TRANSIENT = RetryPolicy("transient", max_attempts=5, backoff_factor=1, backoff_max=60)
# Calls to the outside world (webhooks, SMTP): slower backoff, more patience.
EXTERNAL_HTTP = RetryPolicy("external_http", max_attempts=8, backoff_factor=5,
                            backoff_max=MAX_BROKER_COUNTDOWN)
# Idempotent periodic maintenance: the next beat tick is the retry.
NEVER = RetryPolicy("never", max_attempts=1, retry_on=())

PRESETS = {p.name: p for p in (TRANSIENT, EXTERNAL_HTTP, NEVER)}
