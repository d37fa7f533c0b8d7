"""Celery signal hooks: the correlation id, database connection ageing and a log line for every
task."""

import logging

from celery import signals
from django.db import close_old_connections

from domain.common.correlation import reset_correlation_id, set_correlation_id

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


def _age_connections(task) -> None:
    """What Django does around every request: drop a connection that is broken, in a failed
    transaction or older than CONN_MAX_AGE; otherwise keep it (config/settings/base.py).
    Not for eager calls, which run inside the caller's connection and transaction."""
    if not getattr(task.request, "is_eager", False):
        close_old_connections()
