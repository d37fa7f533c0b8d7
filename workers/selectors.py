"""Reads about the queues for operators (GET /api/v1/queues, `manage.py queues`): each queue's
pause, depth on the broker, the jobs waiting for it in the database and the workers consuming
it. Nothing here broadcasts: the consumers come from the workers' presence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import redis
from django.utils import timezone

from domain.common.errors import NotFound
from domain.jobs.routing import kinds_by_queue
from domain.jobs.selectors import jobs_waiting_by_kind, queue_pauses
from workers.health import queue_depths
from workers.presence import consumers_by_queue
from workers.queues import Queues


@dataclass(frozen=True)
class QueueState:
    name: str
    paused: bool
    paused_at: datetime | None
    paused_by: str | None
    reason: str | None
    depth: int | None  # None: the broker did not answer
    waiting: int  # due jobs of the queue's kinds waiting for a worker, in the database
    oldest_age_seconds: float | None  # how long the oldest of them has been due
    consumers: list[str] | None  # None: the presence (Redis) did not answer


def queue_names() -> list[str]:
    return [queue.value for queue in Queues]


def queue_list() -> list[QueueState]:
    """Every queue, in workers/queues.Queues order. One aggregate over the runnable jobs, one
    read of the pause rows, one LLEN per queue and one HGETALL of the presence."""
    now = timezone.now()
    pauses = queue_pauses()
    depths = queue_depths()
    waiting = jobs_waiting_by_kind(now=now)
    kinds = kinds_by_queue()
    try:
        consumers: dict[str, list[str]] | None = consumers_by_queue()
    except redis.exceptions.RedisError:
        consumers = None
    states = []
    for name in queue_names():
        pause = pauses.get(name)
        ages = [waiting[kind]["oldest_age_seconds"] for kind in kinds.get(name, ())
                if kind in waiting]
        states.append(QueueState(
            name=name, paused=pause is not None,
            paused_at=pause.paused_at if pause else None,
            paused_by=pause.paused_by if pause else None,
            reason=(pause.reason or None) if pause else None,
            depth=depths.get(name),
            waiting=sum(waiting[kind]["waiting"] for kind in kinds.get(name, ())
                        if kind in waiting),
            oldest_age_seconds=max(ages) if ages else None,
            consumers=None if consumers is None else consumers.get(name, [])))
    return states


def queue_declared(name: str) -> str:
    if name not in queue_names():
        raise NotFound(f"No queue named {name!r}.",
                       details={"queue": name, "queues": queue_names()})
    return name


def queue_get(name: str) -> QueueState:
    queue_declared(name)
    return next(state for state in queue_list() if state.name == name)
