"""The queue health check (every minute, scheduler/schedules.py): how deep each queue is, how
long the oldest due job of each kind has waited, and which workers consume each queue.

Logged (one line per queue and per waiting kind) and kept in Redis as the latest snapshot
(`queue_health_latest`), for the metrics endpoint and for operators; the ledger row of each
run keeps the snapshot too (GET /api/v1/schedules/queue-health/runs).

Depths are asked through kombu (the channel's message count, priority sub-queues included);
workers through Celery's `active_queues` broadcast, which waits QUEUE_HEALTH_INSPECT_TIMEOUT
seconds for the replies.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis
from celery import current_app
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import ChannelError

from domain.common.redis import redis_client, redis_key
from domain.jobs.outbox import BROKER_ERRORS
from domain.jobs.selectors import jobs_waiting_by_kind
from workers.queues import Queues

logger = logging.getLogger(__name__)

SNAPSHOT_KEY = ("health", "queues")
SNAPSHOT_TTL = 600  # seconds: a snapshot older than a few missed checks is gone, not stale


def queue_depths() -> dict[str, int | None]:
    """Messages waiting in each queue (workers/queues.Queues), by name; every value None when
    the broker does not answer within one connection attempt (about two seconds). Also read by
    GET /metrics (workers/metrics.py)."""
    depths: dict[str, int | None] = {}
    try:
        with current_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)  # a dead broker is "unknown" in seconds
            channel = conn.default_channel
            for queue in Queues:
                depths[queue.value] = _depth(channel, queue.value)
    except (*BROKER_ERRORS, redis.exceptions.RedisError) as exc:
        logger.warning("queue health: the broker did not answer error=%r", exc)
        return {queue.value: None for queue in Queues}
    return depths


def _depth(channel, queue: str) -> int:
    # kombu's virtual transports (Redis) answer a passive queue_declare with `_size`, but only
    # after an existence check that, with a `global_keyprefix`, looks for the unprefixed key
    # and says "no queue" (kombu 5.5): ask `_size` (the priority sub-queues summed) directly.
    size = getattr(channel, "_size", None)
    if size is not None:
        return int(size(queue))
    try:
        return channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:  # AMQP: not declared yet, so nothing in it
        return 0


def _workers() -> dict[str, list[str]] | None:
    try:
        replies = current_app.control.inspect(
            timeout=settings.QUEUE_HEALTH_INSPECT_TIMEOUT).active_queues() or {}
    except (*BROKER_ERRORS, redis.exceptions.RedisError) as exc:
        logger.warning("queue health: workers unknown error=%r", exc)
        return None
    by_queue: dict[str, list[str]] = {queue.value: [] for queue in Queues}
    for worker, queues in replies.items():
        for queue in queues or []:
            by_queue.setdefault(queue["name"], []).append(worker)
    return {queue: sorted(workers) for queue, workers in by_queue.items()}


def queue_health_check() -> dict[str, Any]:
    now = timezone.now()
    depths = queue_depths()
    # With the broker down the broadcast cannot go out either: do not wait for it.
    broker_up = any(depth is not None for depth in depths.values())
    workers = _workers() if broker_up else None
    kinds = jobs_waiting_by_kind(now=now)
    snapshot = {
        "checked_at": now.isoformat(),
        "queues": {queue: {"depth": depth,
                           "workers": None if workers is None else workers.get(queue, []),
                           "workers_seen": None if workers is None
                           else len(workers.get(queue, []))}
                   for queue, depth in depths.items()},
        "kinds": kinds,
    }
    for queue, facts in snapshot["queues"].items():
        level = logging.WARNING if facts["depth"] and facts["workers_seen"] == 0 else logging.INFO
        logger.log(level, "queue health queue=%s depth=%s workers_seen=%s", queue,
                   facts["depth"], facts["workers_seen"])
    for kind, facts in kinds.items():
        logger.info("queue health kind=%s waiting=%d oldest_age_seconds=%.1f", kind,
                    facts["waiting"], facts["oldest_age_seconds"])
    try:
        redis_client().set(redis_key(*SNAPSHOT_KEY), json.dumps(snapshot), ex=SNAPSHOT_TTL)
    except redis.exceptions.RedisError as exc:
        logger.warning("queue health: snapshot not stored error=%r", exc)
    return snapshot


def queue_health_latest() -> dict[str, Any] | None:
    """The last snapshot, if one was taken in the last SNAPSHOT_TTL seconds."""
    raw = redis_client().get(redis_key(*SNAPSHOT_KEY))
    return None if raw is None else json.loads(raw)
