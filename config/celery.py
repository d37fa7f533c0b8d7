"""The Celery app: settings from Django settings (CELERY_*), queues and routes from workers/."""

import logging
import os

from celery import Celery, signals

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



# --- Logging ----------------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/signals.html#setup-logging
# Django has configured logging from settings.LOGGING by the time Celery sets up its own (the
# Django fix-up runs django.setup() when the worker or Beat loads its modules). Left to
# itself, Celery would then give the `celery.task` logger a handler of its own with its text
# format, and the multiprocessing logger another; with a receiver here it adds none, so
# every line, Celery's own included, goes through the one handler and formatter LOG_FORMAT
# chose. The -l/--loglevel option still sets the level.


@signals.setup_logging.connect
def _keep_django_logging(loglevel=None, **kwargs) -> None:
    if loglevel:
        logging.getLogger().setLevel(loglevel)


@signals.celeryd_init.connect
def _name_the_worker(sender=None, instance=None, **kwargs) -> None:
    """Every line of a worker process names the worker, also outside any task. In JSON,
    the start-up banner (plain text on stdout) becomes one log record instead, so that every
    line the worker writes is JSON."""
    from django.conf import settings

    from domain.common.logging import set_process_log_fields

    set_process_log_fields(worker=sender)
    # Warnings through logging from here on (Celery would start this only later, after its
    # root-privileges warning, which would otherwise be printed as plain text).
    logging.captureWarnings(True)
    if settings.LOG_FORMAT == "json" and instance is not None:
        instance.quiet = True


@signals.celeryd_after_setup.connect
def _log_the_banner(sender=None, instance=None, conf=None, **kwargs) -> None:
    """Stdout and stderr sent to the log, as Celery does when it sets up logging itself (a
    `print` in a task becomes a WARNING record of `celery.redirected`, not a stray line); in
    JSON, what the banner would have said, as one record."""
    from django.conf import settings

    if instance is None:
        return
    if instance.redirect_stdouts:
        instance.app.log.redirect_stdouts(instance.redirect_stdouts_level)
    if settings.LOG_FORMAT != "json":
        return
    logging.getLogger("celery.worker").info(
        "worker starting", extra={
            "queues": sorted(instance.app.amqp.queues.consume_from or {}),
            "concurrency": instance.concurrency,
            "pool": f"{instance.pool_cls.__module__}.{instance.pool_cls.__name__}"
            if isinstance(instance.pool_cls, type) else str(instance.pool_cls),
            "broker": instance.app.connection().as_uri(),
        })
