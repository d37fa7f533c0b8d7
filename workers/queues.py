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
# an error until a worker re-declares. The default exchange has no binding keys to lose.
# Celery replaces a queue's nameless exchange with task_default_exchange, which defaults to the
# default queue's name (Queues._add in celery/app/amqp.py): the worker banner then said
# exchange=maintenance(direct) and every declaration bound the queues to a "maintenance"
# exchange that no task went through, as send_task_message publishes to a direct queue with
# exchange="" anyway. config/celery.py installs this exchange as task_default_exchange too, so
# the declaration is what is used and no binding key is written.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-default-exchange
DEFAULT_EXCHANGE = Exchange("", type="direct")
TASK_QUEUES = tuple(Queue(q.value, DEFAULT_EXCHANGE, routing_key=q.value) for q in Queues)
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
