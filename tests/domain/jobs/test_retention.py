"""Retention of jobs, attempts and task results (domain/jobs/retention.py): terminal jobs
finished before the cutoff go with their attempts; a queued, running or retrying job never
does, nor a terminal one whose event still has a live job; task results go by date_done."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_results.models import GroupResult, TaskResult

from domain.jobs.models import Job, JobAttempt, JobStatus
from domain.jobs.retention import jobs_prune, task_results_prune
from tests.factories import EventFactory, JobFactory

pytestmark = pytest.mark.django_db(transaction=True)

NOW = timezone.now()
CUTOFF = NOW - timedelta(days=30)
OLD, RECENT = NOW - timedelta(days=45), NOW - timedelta(days=2)


def job(status: str, *, at=OLD, finished=True, attempts: int = 1, **fields) -> Job:
    made = JobFactory(status=status, created_at=at, finished_at=at if finished else None,
                      **fields)
    for number in range(1, attempts + 1):
        JobAttempt.objects.create(job=made, number=number, started_at=at, finished_at=at,
                                  outcome="failed")
    return made


def test_old_terminal_jobs_go_with_their_attempts_and_nothing_live_does():
    # given old jobs in every status, two attempts each, and recent finished ones
    old = {s: job(s, attempts=2) for s in JobStatus.values}
    cancelled_unstarted = job(JobStatus.CANCELLED, finished=False)  # judged by created_at
    recent = [job(s, at=RECENT) for s in (JobStatus.SUCCEEDED, JobStatus.DEAD)]

    # when the jobs are pruned with a 30-day cutoff
    report = jobs_prune(cutoff=CUTOFF)

    # then the old succeeded, dead and cancelled ones are gone with their attempts
    gone = [old[s].pk for s in (JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED)]
    assert not Job.objects.filter(pk__in=[*gone, cancelled_unstarted.pk]).exists()
    assert not JobAttempt.objects.filter(job_id__in=gone).exists()
    # and every queued, running or retrying job stays, however old, with its attempts
    for status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING):
        assert JobAttempt.objects.filter(job=old[status]).count() == 2, status
    assert Job.objects.filter(pk__in=[j.pk for j in recent]).count() == 2
    assert report.complete and report.deleted == {"events_job": 4, "events_jobattempt": 7}


def test_a_finished_job_waits_for_the_live_jobs_of_its_event():
    # given an old event with a dead job and a job still retrying, and another event whose
    # jobs are all finished
    busy, done = EventFactory(created_at=OLD), EventFactory(created_at=OLD)
    dead = job(JobStatus.DEAD, event=busy, handler="a")
    job(JobStatus.RETRYING, event=busy, handler="b")
    finished = [job(JobStatus.SUCCEEDED, event=done, handler=h) for h in "ab"]

    # when the jobs are pruned
    jobs_prune(cutoff=CUTOFF)

    # then the dead job stays beside its live sibling (the event's roll-up needs it)
    assert Job.objects.filter(pk=dead.pk).exists()
    assert not Job.objects.filter(pk__in=[j.pk for j in finished]).exists()


def test_task_results_go_by_the_time_they_were_stored():
    old = TaskResult.objects.create(task_id="old", status="SUCCESS")
    kept = TaskResult.objects.create(task_id="kept", status="SUCCESS")
    TaskResult.objects.filter(pk=old.pk).update(date_done=OLD)
    group = GroupResult.objects.create(group_id="g")
    GroupResult.objects.filter(pk=group.pk).update(date_done=OLD)

    report = task_results_prune(cutoff=CUTOFF)

    assert list(TaskResult.objects.values_list("task_id", flat=True)) == [kept.task_id]
    assert not GroupResult.objects.exists() and report.complete
    assert report.deleted == {"django_celery_results_taskresult": 1,
                              "django_celery_results_groupresult": 1}
