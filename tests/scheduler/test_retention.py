"""The daily prune (scheduler/retention.py and its task `conveyor.maintenance.prune`): every
family with its own cutoff, in an order that respects the foreign keys between apps, within
PRUNE_MAX_SECONDS shared fairly; nothing live is ever pruned."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from domain.bulk.inputs import input_table_name
from domain.bulk.models import BulkRun, BulkRunStatus
from domain.common.pruning import PruneReport
from domain.common.redis import redis_client, redis_key
from domain.events.models import Event, EventStatus
from domain.jobs.models import Job, JobAttempt, JobStatus
from domain.notifications.models import Delivery, DeliveryStatus, Message, WebhookEndpoint
from scheduler.models import RunOutcome, ScheduleRun, SkipReason
from scheduler.retention import PLAN, Family, retention_prune
from tasks.maintenance import prune
from tests.bulk_utils import input_tables
from tests.factories import EventFactory, JobFactory

pytestmark = pytest.mark.django_db(transaction=True)

NOW = timezone.now()
YEAR_AGO = NOW - timedelta(days=365)


@pytest.fixture(autouse=True)
def _drop_input_tables():
    yield
    with connection.cursor() as cursor:
        for name in input_tables():
            cursor.execute(f"DROP TABLE {connection.ops.quote_name(name)}")


def old_job(status: str, **fields) -> Job:
    job = JobFactory(status=status, created_at=YEAR_AGO, finished_at=YEAR_AGO, **fields)
    JobAttempt.objects.create(job=job, number=1, started_at=YEAR_AGO, finished_at=YEAR_AGO,
                              outcome="failed")
    return job


def running_bulk_run_with_input() -> BulkRun:
    run = BulkRun(operation="catalog.set_prices", status=BulkRunStatus.RUNNING, chunk_size=10,
                  target_chunk_seconds=1, pause_seconds=0, lock_timeout_seconds=1,
                  created_at=YEAR_AGO, updated_at=YEAR_AGO, target="catalog.product",
                  job=old_job(JobStatus.RUNNING))
    run.input_table = input_table_name(run)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {connection.ops.quote_name(run.input_table)} "
                       "(line integer PRIMARY KEY, sku text)")
    run.save(force_insert=True)
    return run


def test_a_prune_takes_what_is_old_and_finished_and_nothing_live():
    # given a year-old world: finished jobs, events and deliveries, and live ones of each
    live_jobs = [old_job(s) for s in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING)]
    finished_jobs = [old_job(s) for s in (JobStatus.SUCCEEDED, JobStatus.DEAD)]
    busy = EventFactory(created_at=YEAR_AGO, status=EventStatus.DISPATCHED)
    live_jobs.append(old_job(JobStatus.RUNNING, event=busy))
    done = EventFactory(created_at=YEAR_AGO, status=EventStatus.COMPLETED)
    finished_jobs.append(old_job(JobStatus.SUCCEEDED, event=done))
    endpoint = WebhookEndpoint.objects.create(url="https://example.com/h", secret="whsec_x")
    pending, delivered = (
        Delivery.objects.create(endpoint=endpoint, status=status, created_at=YEAR_AGO,
                                message=Message.objects.create(
                                    event_id=uuid.uuid4(), type="t", timestamp=YEAR_AGO,
                                    created_at=YEAR_AGO))
        for status in (DeliveryStatus.PENDING, DeliveryStatus.DELIVERED))
    bulk = running_bulk_run_with_input()
    old_runs = [ScheduleRun.objects.create(schedule="outbox-relay", slot=YEAR_AGO + timedelta(
        seconds=5 * n), outcome=outcome, started_at=YEAR_AGO)
        for n, outcome in enumerate((RunOutcome.SUCCEEDED, RunOutcome.SKIPPED,
                                     RunOutcome.RUNNING))]
    recent_run = ScheduleRun.objects.create(schedule="outbox-relay", slot=NOW, started_at=NOW)

    # when the daily prune runs with the default retention
    outcome = retention_prune(now=NOW)

    # then every finished thing is gone, counted per table
    assert not Job.objects.filter(pk__in=[j.pk for j in finished_jobs]).exists()
    assert not Event.objects.filter(pk=done.pk).exists()
    assert not Delivery.objects.filter(pk=delivered.pk).exists()
    assert outcome["complete"]
    assert outcome["deleted"]["events_job"] == 3
    assert outcome["deleted"]["events_jobattempt"] == 3
    assert outcome["deleted"]["events_event"] == 1
    assert outcome["deleted"]["notifications_delivery"] == 1
    assert outcome["deleted"]["notifications_message"] == 1
    assert outcome["deleted"]["scheduler_schedulerun"] == 2
    # (a ledger row still `running`, however old, stays until it ends or is found lost)
    assert set(ScheduleRun.objects.values_list("pk", flat=True)) == {old_runs[2].pk,
                                                                     recent_run.pk}
    # and every live thing stays: jobs still queued, running or retrying, with their attempts;
    # the event with a live job; the pending delivery and its message; the running bulk run
    # with its input table (and its running job)
    assert Job.objects.filter(pk__in=[j.pk for j in live_jobs]).count() == 4
    assert JobAttempt.objects.filter(job__in=live_jobs).count() == 4
    assert Event.objects.filter(pk=busy.pk).exists()
    assert Delivery.objects.filter(pk=pending.pk).exists()
    assert Message.objects.filter(pk=pending.message_id).exists()
    bulk.refresh_from_db()
    assert bulk.status == BulkRunStatus.RUNNING and bulk.job_id is not None
    assert input_tables() == [bulk.input_table]
    # and each family says what it did, with its cutoff
    assert outcome["families"]["jobs"]["cutoff"] == (NOW - timedelta(days=30)).isoformat()
    assert set(outcome["families"]) == {f.label for f in PLAN}


def test_a_family_kept_for_ever_is_skipped(settings):
    settings.RETENTION_JOBS_DAYS = 0
    job = old_job(JobStatus.SUCCEEDED)

    outcome = retention_prune(now=NOW)

    assert Job.objects.filter(pk=job.pk).exists()
    assert outcome["families"]["jobs"] == {
        "skipped": "RETENTION_JOBS_DAYS is 0 (kept for ever)"}


def test_the_time_is_shared_and_unfinished_families_get_more_turns(settings):
    # given a budget of 90 s and three families: the first finishes at once, the second needs
    # two turns, the third one
    settings.PRUNE_MAX_SECONDS = 90
    calls: list[tuple[str, float]] = []

    def family(label: str, turns: int) -> Family:
        def prune_it(*, cutoff, deadline) -> PruneReport:
            import time

            calls.append((label, round(deadline - time.monotonic())))
            done = sum(1 for name, _ in calls if name == label) >= turns
            return PruneReport(table=label, deleted={label: 1}, batches=1, complete=done)

        return Family(label, "RETENTION_JOBS_DAYS", prune_it)

    # when the prune runs them
    outcome = retention_prune(now=NOW, plan=(family("a", 1), family("b", 2), family("c", 1)))

    # then each had a fair share of what was left (a third, then half, then all), the
    # unfinished one had another turn, and its two reports were added up
    assert calls == [("a", 30), ("b", 45), ("c", 90), ("b", 90)]
    assert outcome["complete"] and outcome["deleted"] == {"a": 1, "b": 2, "c": 1}
    assert outcome["families"]["b"]["batches"] == 2


def test_a_run_out_of_time_stops_and_says_so(settings):
    settings.PRUNE_MAX_SECONDS = 0
    job = old_job(JobStatus.SUCCEEDED)

    outcome = retention_prune(now=NOW)

    assert not outcome["complete"] and outcome["rows"] == 0
    assert Job.objects.filter(pk=job.pk).exists()


def test_the_prune_task_skips_while_another_run_holds_its_lock():
    lock = redis_client().lock(redis_key("lock", "retention-prune"), timeout=30)
    assert lock.acquire(blocking=False)
    try:
        assert prune.apply().get()["skipped"] == "overlap"
    finally:
        lock.release()
    assert ScheduleRun.objects.get(schedule="retention-prune").reason == SkipReason.OVERLAP


def test_the_prune_task_is_routed_to_maintenance_with_limits_above_its_budget(settings):
    from workers.queues import queue_for_task

    assert queue_for_task(prune.name) == "maintenance"
    assert prune.soft_time_limit > settings.PRUNE_MAX_SECONDS
    assert prune.time_limit > prune.soft_time_limit


@pytest.mark.worker
def test_the_prune_task_runs_in_a_real_worker(celery_worker_thread):
    # given a finished year-old job and a queued one
    finished, queued = old_job(JobStatus.SUCCEEDED), old_job(JobStatus.QUEUED)

    # when the task goes through the broker to a worker
    outcome = prune.delay().get(timeout=120)

    # then the worker pruned the finished one only, and the ledger says so
    assert outcome["deleted"]["events_job"] == 1
    run = ScheduleRun.objects.get(schedule="retention-prune")
    assert run.outcome == RunOutcome.SUCCEEDED and run.result["deleted"]["events_job"] == 1
    assert not Job.objects.filter(pk=finished.pk).exists()
    assert Job.objects.filter(pk=queued.pk).exists()
