"""Celery signal hooks: the correlation id, database connection ageing, a log line for every
task, and a check of the broker when the worker starts."""

import logging

from celery import signals
from django.db import close_old_connections

from domain.common.correlation import reset_correlation_id, set_correlation_id
from domain.common.redis import broker_problems

logger = logging.getLogger("workers.tasks")
_tokens: dict[str, object] = {}


@signals.task_prerun.connect
def _bind_correlation_id(task_id=None, task=None, **kwargs) -> None:
    _age_connections(task)
    correlation_id = getattr(task.request, "correlation_id", None) or task_id
    _tokens[task_id] = set_correlation_id(str(correlation_id))


@signals.task_postrun.connect
def _unbind_correlation_id(task_id=None, task=None, state=None, **kwargs) -> None:
    token = _tokens.pop(task_id, None)
    logger.debug("task finished task=%s task_id=%s state=%s", task.name, task_id, state)
    if token is not None:
        reset_correlation_id(token)
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
