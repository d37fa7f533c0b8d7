"""Queue names and routing, declared once. Tasks are routed by name prefix."""

from enum import StrEnum

from kombu import Exchange, Queue


class Queues(StrEnum):
    EVENTS = "events"
    NOTIFICATIONS = "notifications"
    BULK = "bulk"
    CACHE = "cache"
    MAINTENANCE = "maintenance"


# The default (nameless) exchange delivers straight to the queue named by the routing key.
# On Redis a named exchange needs binding keys, and kombu caches "already bound" in memory:
# after a Redis restart that lost them, publishes through a named exchange are dropped without
# an error until a worker re-declares. Through the default exchange nothing can go missing.
_exchange = Exchange("")
TASK_QUEUES = tuple(Queue(q.value, _exchange, routing_key=q.value) for q in Queues)
# Celery's own housekeeping tasks (and anything unrouted) go to maintenance; every
# conveyor task has an explicit route below, which a test checks.
DEFAULT_QUEUE = Queues.MAINTENANCE.value

# Task names are "conveyor.<family>.<action>"; the family picks the queue.
ROUTE_PREFIXES: dict[str, Queues] = {
    "conveyor.events.": Queues.EVENTS,
    "conveyor.demo.": Queues.EVENTS,
    "conveyor.notifications.": Queues.NOTIFICATIONS,
    "conveyor.bulk.": Queues.BULK,
    "conveyor.cache.": Queues.CACHE,
    "conveyor.maintenance.": Queues.MAINTENANCE,
}
TASK_ROUTES = {
    f"{prefix}*": {"queue": queue.value, "routing_key": queue.value}
    for prefix, queue in ROUTE_PREFIXES.items()
}


def queue_for_task(name: str) -> str | None:
    for prefix, queue in ROUTE_PREFIXES.items():
        if name.startswith(prefix):
            return queue.value
    return None


ALL_QUEUES = ",".join(q.value for q in Queues)
