"""The queue health check against the real broker, database and workers."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from config.celery import app
from domain.jobs.models import JobStatus
from tests.broker_utils import UNREACHABLE_BROKER, broker_at
from tests.factories import JobFactory
from workers.health import queue_health_check, queue_health_latest
from workers.queues import Queues

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _short_inspect(settings):
    settings.QUEUE_HEALTH_INSPECT_TIMEOUT = 0.3


def test_depths_per_queue_come_from_the_broker(private_broker):
    for _ in range(3):
        app.send_task("conveyor.cache.invalidate", args=["x"], queue="cache")
    app.send_task("conveyor.events.noop", args=["y"], queue="events")

    snapshot = queue_health_check()

    depths = {queue: facts["depth"] for queue, facts in snapshot["queues"].items()}
    assert depths == {"events": 1, "notifications": 0, "bulk": 0, "cache": 3,
                      "maintenance": 0}
    # nobody consumes this test's private queues
    assert all(facts["workers_seen"] == 0 for facts in snapshot["queues"].values())


def test_the_oldest_due_job_per_kind_and_only_due_ones():
    now = timezone.now()
    old = JobFactory(kind="cache_invalidation", status=JobStatus.QUEUED,
                     created_at=now - dt.timedelta(seconds=120))
    JobFactory(kind="cache_invalidation", status=JobStatus.QUEUED,
               created_at=now - dt.timedelta(seconds=10))
    # a retry due 30 s ago has waited 30 s, whenever it was created
    JobFactory(kind="webhook_delivery", status=JobStatus.RETRYING,
               created_at=now - dt.timedelta(hours=2),
               next_retry_at=now - dt.timedelta(seconds=30))
    # not waiting for a worker: a retry not due yet, a delayed job, a running and a done one
    JobFactory(kind="email_delivery", status=JobStatus.RETRYING,
               next_retry_at=now + dt.timedelta(minutes=5))
    JobFactory(kind="email_delivery", status=JobStatus.QUEUED,
               run_at=now + dt.timedelta(minutes=5))
    JobFactory(kind="bulk_run", status=JobStatus.RUNNING)
    JobFactory(kind="bulk_run", status=JobStatus.SUCCEEDED)

    kinds = queue_health_check()["kinds"]

    assert set(kinds) == {"cache_invalidation", "webhook_delivery"}
    assert kinds["cache_invalidation"]["waiting"] == 2
    age = (timezone.now() - old.created_at).total_seconds()
    assert age - 5 <= kinds["cache_invalidation"]["oldest_age_seconds"] <= age
    assert 29 <= kinds["webhook_delivery"]["oldest_age_seconds"] <= 40


def test_the_snapshot_is_kept_for_the_metrics_endpoint():
    snapshot = queue_health_check()
    assert queue_health_latest() == snapshot
    assert dt.datetime.fromisoformat(snapshot["checked_at"]) <= timezone.now()


def test_with_the_broker_down_the_check_says_unknown_and_does_not_fail():
    with broker_at(UNREACHABLE_BROKER):
        snapshot = queue_health_check()
    assert {facts["depth"] for facts in snapshot["queues"].values()} == {None}
    assert {facts["workers_seen"] for facts in snapshot["queues"].values()} == {None}
    assert snapshot["kinds"] == {}


@pytest.mark.django_db(transaction=True)
def test_workers_seen_per_queue(celery_worker_thread, settings):
    settings.QUEUE_HEALTH_INSPECT_TIMEOUT = 1.0
    queues = queue_health_check()["queues"]
    for queue in Queues:
        assert queues[queue.value]["workers_seen"] >= 1, queues
        assert celery_worker_thread.hostname in queues[queue.value]["workers"]
