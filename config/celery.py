"""The Celery app: settings from Django settings (CELERY_*), queues and routes from workers/."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("conveyor")
# https://docs.celeryq.dev/en/stable/django/first-steps-with-django.html
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.on_after_configure.connect
def _configure_queues(sender: Celery, **kwargs) -> None:
    # Imported late: workers.queues is plain Python, but keeping the Celery app free of
    # project imports at module load keeps `celery -A config` start-up order simple.
    from workers.queues import DEFAULT_QUEUE, TASK_QUEUES, TASK_ROUTES

    sender.conf.task_queues = TASK_QUEUES
    sender.conf.task_default_queue = DEFAULT_QUEUE
    sender.conf.task_routes = TASK_ROUTES
    sender.conf.task_create_missing_queues = False

