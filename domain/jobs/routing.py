"""Queues as the jobs app sees them, without importing the worker runtime: the queues the Celery
app declares, each job kind's queue (the app's routes, as a send would take them), and the hook
through which the worker runtime hears at once that a queue was paused or resumed.

The queue names and routes are declared in workers/queues.py and installed on the Celery app by
config/celery.py; domain code reads them back from the app (`current_app`), as the outbox does
when it sends, so the jobs app never imports `workers` (README, Layout).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import current_app

from domain.jobs.registry import job_kinds

logger = logging.getLogger(__name__)


def declared_queues() -> list[str]:
    """Every queue the Celery app declares (`task_queues`), in declaration order."""
    return [queue.name for queue in current_app.conf.task_queues or ()]


def queue_of_task(task_name: str) -> str:
    return current_app.amqp.router.route({}, task_name)["queue"].name


def kinds_by_queue() -> dict[str, set[str]]:
    """Queue name -> the registered job kinds whose task is routed to it."""
    by_queue: dict[str, set[str]] = {}
    for kind in job_kinds():
        by_queue.setdefault(queue_of_task(kind.task_name), set()).add(kind.name)
    return by_queue


def kinds_on_queues(queues: set[str] | frozenset[str]) -> set[str]:
    """The job kinds whose queue is one of `queues`."""
    if not queues:
        return set()
    return {kind for queue, kinds in kinds_by_queue().items() if queue in queues
            for kind in kinds}


# --- Who is told when a queue is paused or resumed ------------------------------------------
# The worker runtime installs one listener at start-up (workers/apps.py): it broadcasts the
# change to the running workers, which stop or start consuming the queue at once instead of at
# their next look at the pause rows. The pause itself is the row; a listener that fails (the
# broker down) costs only that delay.

QueueListener = Callable[[str, bool], None]
_listeners: list[QueueListener] = []


def install_queue_listener(listener: QueueListener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def queue_changed(queue: str, *, paused: bool) -> None:
    """Tell the listeners (after the change committed)."""
    for listener in list(_listeners):
        try:
            listener(queue, paused)
        except Exception:  # a listener must not undo or fail a committed pause
            logger.exception("queue listener failed queue=%s paused=%s", queue, paused)
