"""Every task has an explicit name, a queue and a named retry policy."""

import pytest

from config.celery import app
from domain.events.registry import event_types
from domain.jobs.registry import job_kinds
from domain.jobs.retry import (
    MAX_BROKER_COUNTDOWN,
    PRESETS,
    RetryPolicy,
)
from workers.queues import Queues, queue_for_task


@pytest.fixture(scope="module")
def conveyor_tasks():
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if name.startswith("conveyor.")}


def test_every_conveyor_task_is_routed_to_a_declared_queue(conveyor_tasks):
    assert conveyor_tasks
    for name in conveyor_tasks:
        assert queue_for_task(name) in {q.value for q in Queues}, name
        route = app.amqp.router.route({}, name)
        assert route["queue"].name == queue_for_task(name), name


def test_every_conveyor_task_has_a_named_retry_policy(conveyor_tasks):
    for name, task in conveyor_tasks.items():
        policy = task.retry_policy
        assert isinstance(policy, RetryPolicy), name
        assert policy.name, name


def test_every_job_kind_points_at_a_registered_task(conveyor_tasks):
    for kind in job_kinds():
        assert kind.task_name in conveyor_tasks, kind.name


def test_every_event_handler_uses_a_registered_kind():
    kinds = {k.name for k in job_kinds()}
    for event_type in event_types():
        for handler in event_type.handlers:
            assert handler.kind in kinds


def test_celery_reliability_settings():
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_soft_time_limit < conf.task_time_limit
    # workers send task events for Flower; publishers send no task-sent event (a second broker
    # write per message, bench/)
    assert conf.worker_send_task_events and not conf.task_send_sent_event
    # workers keep their database connection between tasks (Celery's fix-up would reconnect)
    assert conf.get("CELERY_DB_REUSE_MAX", 0) >= 1_000_000
    assert conf.result_backend == "django-db" and conf.result_extended
    # no countdown handed to the broker outlives its visibility timeout (longer ones wait in
    # the database), and the presets stay under that threshold
    assert all(p.backoff_max <= MAX_BROKER_COUNTDOWN for p in PRESETS.values())
    longest = MAX_BROKER_COUNTDOWN + conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] > longest




def test_celery_never_stops_a_job_tasks_retries_before_the_jobs_own_attempts():
    # `retry(max_retries=None)` falls back to the task's attribute (Celery's default: 3); a
    # job's attempts are its row's max_attempts, decided in the lifecycle
    from celery import current_app

    from workers.base import JobTask

    job_tasks = [task for task in current_app.tasks.values() if isinstance(task, JobTask)]
    assert job_tasks
    assert {task.name: task.max_retries for task in job_tasks} == {
        task.name: None for task in job_tasks}
