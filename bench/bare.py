"""The baseline worker: a bare Celery app with one no-op task, nothing else.

Same broker, serializer, acknowledgement mode and prefetch as the project's worker, and the
suite starts it with the same pool and concurrency flags; no Django, no database, no result
backend, no task events. The end-to-end figures are divided by its drain rate.
"""

import os

from celery import Celery

# What every baseline worker shares with the project's (bench/bare_results.py adds results).
BARE_CONF = {
    "task_serializer": "json",
    "accept_content": ["json"],
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "broker_connection_retry_on_startup": True,
    "worker_hijack_root_logger": False,
}

app = Celery("bare", broker=os.environ["BENCH_BROKER_URL"])
app.conf.update(BARE_CONF, task_default_queue="bare")


@app.task(name="bench.noop")
def noop():
    return None
