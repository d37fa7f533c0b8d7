"""The suite's baselines do what they are named for: the naive recipe stores the event and sends
one message, the `bench.solo` kind puts each job on a message of its own where the project's
worker consumes it, and the second bare worker stores its results with django-celery-results.

The bench settings are read in a subprocess: installing the bench app here would register its
kind and event type in this test run's registries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from domain.events.models import Event
from tests.conftest import queued_tasks

ROOT = Path(__file__).resolve().parents[2]
PING = {"type": "demo.ping", "payload": {"message": "naive"}}


@pytest.mark.django_db
@override_settings(ROOT_URLCONF="bench.urls")
def test_the_naive_recipe_stores_the_event_and_sends_one_message(client, broker):
    # when the plain Django view is posted an event, with no credentials
    response = client.post("/bench/naive", data=json.dumps(PING),
                           content_type="application/json")

    # then it answers 202 with the stored event's id
    assert response.status_code == 202
    event = Event.objects.get(pk=response.json()["id"])
    assert (event.type, event.payload) == ("demo.ping", {"message": "naive"})
    # and the no-op task went, with that id, to the queue no worker consumes
    assert [(t["task"], t["arg"]) for t in queued_tasks(broker, "bench_naive")] == [
        ("bench.naive_noop", str(event.pk))]


def _bench_python(code: str) -> dict:
    """Run `code` in a process set up as the suite's are (bench.settings, no services needed);
    it prints one JSON line."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings",
           "DJANGO_SECRET_KEY": "x" * 64, "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
           "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/conveyor_bench_unused",
           "BENCH_BROKER_URL": "redis://127.0.0.1:1/0", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_bench_solo_kind_puts_each_job_on_its_own_message_for_the_project_worker():
    facts = _bench_python("""
import json, django
django.setup()
from celery import current_app as app
from domain.events.registry import get_event_type
from domain.jobs.models import Job
from domain.jobs.outbox import _messages
from domain.jobs.registry import get_job_kind
from workers.base import JobTask
from workers.profiles import PROFILES
app.loader.import_default_modules()
kind = get_job_kind("bench.solo")
jobs = [Job(kind=kind.name, params={}) for _ in range(3)]
print(json.dumps({
    "batch_size": kind.batch_size,
    "handlers": [h.kind for h in get_event_type("bench.solo").handlers],
    "job_task": isinstance(app.tasks[kind.task_name], JobTask),
    "queue": app.amqp.router.route({}, kind.task_name)["queue"].name,
    "noop_queue": app.amqp.router.route({}, get_job_kind("noop").task_name)["queue"].name,
    "all_queues": PROFILES["all"].queues.split(","),
    "messages": [len(chunk) for _, chunk in _messages(jobs, None)],
}))
""")
    # then the kind has batch_size 1 and is bench.solo's one handler
    assert facts["batch_size"] == 1 and facts["handlers"] == ["bench.solo"]
    # and its task is a job task on the noop kind's queue, which the `all` worker consumes
    assert facts["job_task"]
    assert facts["queue"] == facts["noop_queue"] and facts["queue"] in facts["all_queues"]
    # and three jobs travel as three messages
    assert facts["messages"] == [1, 1, 1]


def test_the_second_bare_worker_stores_results_with_django_celery_results_only():
    facts = _bench_python("""
import json, os
from bench.bare_results import app, noop
from django.apps import apps
print(json.dumps({
    "backend": type(app.backend).__module__, "ignore_result": noop.ignore_result,
    "fixups": [type(f).__name__ for f in app._fixups if f is not None],
    "apps": [a.name for a in apps.get_app_configs()],
    "queue": app.conf.task_default_queue, "acks_late": app.conf.task_acks_late,
    "prefetch": app.conf.worker_prefetch_multiplier,
}))
""")
    # then results go to the database through django-celery-results, nothing of the project
    # is installed, and Celery's Django fix-up (a reconnection around every task) is not there
    assert facts["backend"] == "django_celery_results.backends.database"
    assert facts["ignore_result"] is False
    assert facts["apps"] == ["django_celery_results"] and facts["fixups"] == []
    # and it is bench/bare.py's worker otherwise, on a queue of its own
    assert facts["queue"] == "bare_results" and facts["acks_late"] and facts["prefetch"] == 1
