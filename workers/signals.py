"""Celery signal hooks: the correlation id and a log line for every task."""

import logging

from celery import signals

from domain.common.correlation import reset_correlation_id, set_correlation_id

logger = logging.getLogger("workers.tasks")
_tokens: dict[str, object] = {}


@signals.task_prerun.connect
def _bind_correlation_id(task_id=None, task=None, **kwargs) -> None:
    correlation_id = getattr(task.request, "correlation_id", None) or task_id
    _tokens[task_id] = set_correlation_id(str(correlation_id))


@signals.task_postrun.connect
def _unbind_correlation_id(task_id=None, task=None, state=None, **kwargs) -> None:
    token = _tokens.pop(task_id, None)
    logger.debug("task finished task=%s task_id=%s state=%s", task.name, task_id, state)
    if token is not None:
        reset_correlation_id(token)
