"""The Celery app: settings from Django settings (CELERY_*), queues and routes from workers/."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("conveyor")
# https://docs.celeryq.dev/en/stable/django/first-steps-with-django.html
app.config_from_object("django.conf:settings", namespace="CELERY")
# Every worker's consumer reads the durable queue pauses before its first message and follows
# them, and writes the worker's presence (workers/steering.py). Named by path: resolved when a
# worker builds its consumer, so nothing of the project is imported here.
# https://docs.celeryq.dev/en/stable/userguide/extending.html#consumer-bootsteps
app.steps["consumer"].add("workers.steering:QueueSteering")


@app.on_after_configure.connect
def _configure_queues(sender: Celery, **kwargs) -> None:
    # Imported late: workers.queues is plain Python, but keeping the Celery app free of
    # project imports at module load keeps `celery -A config` start-up order simple.
    from workers.queues import DEFAULT_EXCHANGE, DEFAULT_QUEUE, TASK_QUEUES, TASK_ROUTES

    sender.conf.task_queues = TASK_QUEUES
    # Left unset, Celery gives every queue an exchange named after the default queue, one that
    # tasks never go through; see workers/queues.py.
    # https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-default-exchange
    sender.conf.task_default_exchange = DEFAULT_EXCHANGE.name
    sender.conf.task_default_exchange_type = DEFAULT_EXCHANGE.type
    sender.conf.task_default_queue = DEFAULT_QUEUE
    sender.conf.task_routes = TASK_ROUTES
    sender.conf.task_create_missing_queues = False

