"""Worker presence: which workers are alive and which queues each consumes now, without asking
them.

Every worker writes a heartbeat every WORKER_HEARTBEAT_SECONDS from its consumer's event loop
(workers/steering.py): its node name, main pid, the queues it consumes now (a paused queue is
not among them), the queues it was started with, and when. The heartbeats are one Redis hash in
REDIS_URL (`<prefix>workers:seen`, a field per worker); a worker that stops cleanly removes its
field, one that dies stops writing and ages out. Readers judge by age (WORKER_SEEN_SECONDS),
so the answer costs one HGETALL: no broadcast, no waiting for replies (Celery's `inspect`
waits a timeout for every answer, and is what the minute's queue health check still uses).

Written from the event loop rather than from a thread of its own, so a heartbeat also says
the consumer is turning: a worker whose loop is stuck stops being seen, which is what the
liveness probe (`manage.py worker_alive`) needs to know. Clocks are compared across machines,
as the job leases already require: keep them synchronised (NTP).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.utils import timezone

from domain.common.redis import redis_client, redis_key
from domain.jobs.selectors import queue_pauses
from workers.queues import Queues

PRESENCE_KEY = ("workers", "seen")
# A worker not seen for this long is dropped from the hash by the next reader; the hash itself
# expires this long after the last heartbeat of any worker.
FORGET_AFTER_SECONDS = 3600


def heartbeat(*, hostname: str, pid: int, queues: Iterable[str], configured: Iterable[str],
              now: datetime | None = None) -> None:
    """Record that `hostname` is alive and consumes `queues` now. Raises RedisError."""
    now = now or timezone.now()
    record = {"queues": sorted(queues), "configured": sorted(configured),
              "seen_at": now.astimezone(UTC).isoformat(), "pid": pid}
    key = redis_key(*PRESENCE_KEY)
    pipe = redis_client().pipeline(transaction=False)
    pipe.hset(key, hostname, json.dumps(record))
    pipe.expire(key, FORGET_AFTER_SECONDS)
    pipe.execute()


def forget(hostname: str) -> None:
    """The worker stops (cleanly): it is no longer seen, at once. Raises RedisError."""
    redis_client().hdel(redis_key(*PRESENCE_KEY), hostname)


def workers_seen(*, max_age: float | None = None) -> dict[str, dict]:
    """hostname -> {"queues": [...], "configured": [...], "seen_at": ISO 8601, "pid": int} for
    every worker whose last heartbeat is at most `max_age` seconds old (WORKER_SEEN_SECONDS
    if not given). Raises redis.exceptions.RedisError when Redis does not answer."""
    max_age = settings.WORKER_SEEN_SECONDS if max_age is None else max_age
    key = redis_key(*PRESENCE_KEY)
    client = redis_client()
    now = timezone.now()
    seen: dict[str, dict] = {}
    gone: list[bytes] = []
    for field, raw in client.hgetall(key).items():
        try:
            record = json.loads(raw)
            age = (now - datetime.fromisoformat(record["seen_at"])).total_seconds()
        except (ValueError, KeyError, TypeError):
            gone.append(field)  # not a heartbeat this code wrote
            continue
        if age > FORGET_AFTER_SECONDS:
            gone.append(field)
        elif age <= max_age:
            seen[field.decode()] = {"queues": list(record.get("queues", [])),
                                    "configured": list(record.get("configured", [])),
                                    "seen_at": record["seen_at"], "pid": record.get("pid")}
    if gone:
        client.hdel(key, *gone)
    return seen


def consumers_by_queue(*, max_age: float | None = None) -> dict[str, list[str]]:
    """Every queue of workers/queues.Queues -> the hostnames seen consuming it within `max_age`
    seconds (WORKER_SEEN_SECONDS if not given), sorted. A paused queue has none: its workers
    stopped consuming it (their `configured` queues still name it). Raises RedisError."""
    by_queue: dict[str, list[str]] = {queue.value: [] for queue in Queues}
    for hostname, record in sorted(workers_seen(max_age=max_age).items()):
        for queue in record["queues"]:
            if queue in by_queue:
                by_queue[queue].append(hostname)
    return by_queue


def queues_readiness() -> tuple[str, dict]:
    """The `queues` check of /readyz (installed by workers/apps.py into domain/common/health):
    per queue, whether it is paused and how many workers were seen consuming it. A queue that
    is not paused and has no consumer makes the answer `degraded` and is named; a paused queue
    is reported as paused, not as a problem. Counts, not host names: the probe is public."""
    try:
        consumers = consumers_by_queue()
    except redis.exceptions.RedisError as exc:
        return f"unknown: workers not readable ({type(exc).__name__})", {}
    paused = set(queue_pauses())
    detail = {queue: {"paused": queue in paused, "consumers": len(hosts)}
              for queue, hosts in consumers.items()}
    missing = [queue for queue, facts in detail.items()
               if not facts["paused"] and not facts["consumers"]]
    if missing:
        seconds = f"{settings.WORKER_SEEN_SECONDS:g}"
        return (f"degraded: no worker seen consuming {', '.join(missing)} in the last "
                f"{seconds} s"), detail
    return "ok", detail
