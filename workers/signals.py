"""Celery signal hooks: the correlation id and log context of every task, database connection
ageing, a log line for every task, and a check of the broker when the worker starts."""

import logging
import threading

from celery import signals
from django.db import close_old_connections

from domain.common.correlation import MESSAGE_HEADER, reset_correlation_id, set_correlation_id
from domain.common.logging import bind_log_context, reset_log_context
from domain.common.redis import broker_problems
from workers.base import JobTask

logger = logging.getLogger("workers.tasks")
# What task_prerun set, for task_postrun to reset: by task id and thread, as two deliveries of
# one message (the same task id) may run at once in a threads pool.
_tokens: dict[tuple[str, int], tuple[object, object]] = {}


@signals.task_prerun.connect
def _bind_correlation_id(task_id=None, task=None, args=None, **kwargs) -> None:
    _age_connections(task)
    correlation_id = getattr(task.request, MESSAGE_HEADER, None) or task_id
    # A job task's message names one job (its id is the task id) or a micro-batch's list of
    # them; each job of a batch gets its own context while it runs (workers/base.py).
    job_id = args[0] if isinstance(task, JobTask) and args and isinstance(args[0], str) \
        else None
    delivery = task.request.delivery_info or {}
    _tokens[(task_id, threading.get_ident())] = (
        set_correlation_id(str(correlation_id)),
        bind_log_context(task=task.name, queue=delivery.get("routing_key"),
                         worker=task.request.hostname, job_id=job_id))


@signals.task_postrun.connect
def _unbind_correlation_id(task_id=None, task=None, state=None, **kwargs) -> None:
    tokens = _tokens.pop((task_id, threading.get_ident()), None)
    logger.debug("task finished task=%s task_id=%s state=%s", task.name, task_id, state)
    if tokens is not None:
        reset_log_context(tokens[1])
        reset_correlation_id(tokens[0])
    _age_connections(task)


@signals.worker_ready.connect
def _check_the_broker(sender=None, **kwargs) -> None:
    """Say loudly, at start, when the broker Redis would lose messages: an evicting
    maxmemory policy drops queue lists when memory runs short, with no error anywhere."""
    try:
        with sender.app.connection_for_write() as conn:
            client = getattr(conn.default_channel, "client", None)
            problems = broker_problems(client) if client is not None else []
    except Exception as exc:  # noqa: BLE001 - a check that cannot run must not stop the worker
        logger.warning("broker check could not run error=%r", exc)
        return
    for problem in problems:
        advice = ("set `maxmemory-policy noeviction` on the Redis in CELERY_BROKER_URL"
                  if "maxmemory-policy" in problem else
                  "give the Redis in CELERY_BROKER_URL more maxmemory, or free some")
        logger.error("broker: %s; %s (README, Production)", problem, advice)


def _age_connections(task) -> None:
    """What Django does around every request: drop a connection that is broken, in a failed
    transaction or older than CONN_MAX_AGE; otherwise keep it (config/settings/base.py).
    Not for eager calls, which run inside the caller's connection and transaction."""
    if not getattr(task.request, "is_eager", False):
        close_old_connections()
