"""The worker's main process reads every message before a pool process runs it, and logs it
there ("Task conveyor.…[<id>] received"). Celery lets a task name the function that does this
(`Task.Strategy`); Conveyor's tasks take Celery's own and run it inside the message's log
context, so those lines carry the correlation id, task, queue and worker as the task's own
lines do (workers/signals.py sets them in the process that runs it)."""

from __future__ import annotations

from typing import Any

from celery.worker.strategy import default

from domain.common.correlation import MESSAGE_HEADER, reset_correlation_id, set_correlation_id
from domain.common.logging import log_context


def with_log_context(task, app, consumer, **kwargs: Any):
    handle = default(task, app, consumer, **kwargs)
    worker = consumer.hostname

    def handle_message(message, body, ack, reject, callbacks, **more: Any):
        headers = message.headers or {}
        # As task_prerun: the id the message carries, else its task id.
        token = set_correlation_id(str(headers.get(MESSAGE_HEADER) or headers.get("id")
                                       or "-"))
        try:
            with log_context(task=task.name, worker=worker,
                             queue=(message.delivery_info or {}).get("routing_key")):
                return handle(message, body, ack, reject, callbacks, **more)
        finally:
            reset_correlation_id(token)

    return handle_message
