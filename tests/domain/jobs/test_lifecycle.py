"""Recording success: only a job still `running` becomes `succeeded` and gets an attempt row."""

from __future__ import annotations

import pytest

from domain.jobs.lifecycle import (
    job_claim,
    job_fail,
    job_schedule_retry,
    job_succeed,
    jobs_defer,
    jobs_release,
    jobs_succeed,
)
from domain.jobs.models import Job, JobAttempt, JobStatus
from tests.factories import EventFactory, JobFactory


@pytest.mark.django_db
def test_success_is_recorded_once_with_its_attempt_and_event():
    # given a claimed job of an event
    job = JobFactory(event=EventFactory(), handler="demo.noop")
    claimed = job_claim(job_id=str(job.pk), worker="w@h")

    # when it succeeds
    job_succeed(job=claimed, result={"ok": True})

    # then the row, one attempt and the event say so
    job.refresh_from_db()
    assert (job.status, job.result, job.attempts) == (JobStatus.SUCCEEDED, {"ok": True}, 1)
    [attempt] = JobAttempt.objects.filter(job=job)
    assert (attempt.outcome, attempt.number, attempt.run, attempt.worker) == (
        "succeeded", 1, 0, "w@h")
    assert attempt.started_at == claimed.started_at and attempt.finished_at == job.finished_at
    assert job.event.status == "completed"


@pytest.mark.django_db
def test_a_job_that_left_running_meanwhile_gets_no_success_and_no_attempt():
    # given two claimed jobs, one of which the orphan rescue put back to `queued` meanwhile
    kept, rescued = (JobFactory(), JobFactory())
    claimed = [job_claim(job_id=str(j.pk), worker="w") for j in (kept, rescued)]
    Job.objects.filter(pk=rescued.pk).update(status=JobStatus.QUEUED)

    # when both are recorded as succeeded together
    jobs_succeed(outcomes=[(claimed[0], {"n": 1}), (claimed[1], {"n": 2})])

    # then only the job still running changed, and only it has an attempt
    kept.refresh_from_db()
    rescued.refresh_from_db()
    assert (kept.status, kept.result) == (JobStatus.SUCCEEDED, {"n": 1})
    assert (rescued.status, rescued.result) == (JobStatus.QUEUED, None)
    assert list(JobAttempt.objects.values_list("job_id", flat=True)) == [kept.pk]


@pytest.mark.django_db
@pytest.mark.parametrize("finish", ["succeed", "retry", "dead", "defer", "release"])
def test_a_worker_that_woke_after_its_job_was_claimed_again_records_nothing(finish):
    # given a job claimed by worker A, rescued as lost (A stopped renewing: frozen, not dead),
    # and claimed again by worker B
    job = JobFactory(kind="noop")
    by_a = job_claim(job_id=str(job.pk), worker="a@h")
    Job.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)  # the rescue's requeue
    by_b = job_claim(job_id=str(job.pk), worker="b@h")
    assert by_b.attempts == by_a.attempts + 1

    # when A wakes and records its outcome
    if finish == "succeed":
        job_succeed(job=by_a, result={"by": "a"})
    elif finish == "retry":
        job_schedule_retry(job=by_a, exc=ConnectionError("x"), countdown=5)
    elif finish == "dead":
        job_fail(job=by_a, exc=ValueError("x"))
    elif finish == "defer":
        assert jobs_defer(jobs=[by_a], countdown=5) == [by_a]  # (A believes it deferred)
    else:
        jobs_release(jobs=[by_a])

    # then B's claim is untouched: still running with B's attempt, and no attempt row of A's
    row = Job.objects.get(pk=job.pk)
    assert (row.status, row.attempts, row.worker) == (JobStatus.RUNNING, by_b.attempts, "b@h")
    assert not JobAttempt.objects.filter(job=job).exists()

    # and B's own outcome is recorded
    job_succeed(job=by_b, result={"by": "b"})
    row.refresh_from_db()
    assert row.status == JobStatus.SUCCEEDED and row.result == {"by": "b"}
    assert list(JobAttempt.objects.filter(job=job).values_list("number", flat=True)) == [
        by_b.attempts]
