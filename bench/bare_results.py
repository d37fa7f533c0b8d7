"""The second baseline worker: bench/bare.py's bare Celery app and no-op task, with
django-celery-results storing every task's result in the bench database.

Same broker, serializer, acknowledgement mode and prefetch as bench/bare.py, and the suite
starts it with the same pool and concurrency flags. Django is set up with only what the result
backend needs (the bench database, `django_celery_results`): none of the project's apps,
signal hooks or tasks run in it. Its settings are django-celery-results' defaults (no extended
results); each process keeps its database connection (no Celery Django fix-up closing it
around every task), so what this baseline adds to bench/bare.py is the result row, one
INSERT ... ON CONFLICT per task, not a reconnection.
"""

import os

import django
import environ
from celery import Celery
from django.conf import settings

from bench.bare import BARE_CONF

# No Celery Django fix-up (it is installed when DJANGO_SETTINGS_MODULE is set): it would close
# the database connection before and after every task. Django is configured here instead.
os.environ.pop("DJANGO_SETTINGS_MODULE", None)
if not settings.configured:
    settings.configure(
        DATABASES={"default": environ.Env.db_url_config(os.environ["DATABASE_URL"])},
        INSTALLED_APPS=["django_celery_results"], USE_TZ=True, TIME_ZONE="UTC")
    django.setup()

app = Celery("bare_results", broker=os.environ["BENCH_BROKER_URL"])
app.conf.update(
    BARE_CONF,
    task_default_queue="bare_results",
    result_backend="django-db",
    result_serializer="json",
    task_ignore_result=False,
)


@app.task(name="bench.noop_stored")
def noop():
    return None
