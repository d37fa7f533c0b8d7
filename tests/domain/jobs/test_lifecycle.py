"""Recording success: only a job still `running` becomes `succeeded` and gets an attempt row."""

from __future__ import annotations

import pytest

from domain.jobs.lifecycle import job_claim, job_succeed, jobs_succeed
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
