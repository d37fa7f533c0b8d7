"""Jobs reach their events only through the hooks they expose: called at the three moments an
event follows its jobs (sent, finished, reopened), and a no-op by default, so jobs run alone."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.events.models import EventStatus
from domain.jobs import hooks as job_hooks
from domain.jobs.hooks import JobHooks
from domain.jobs.lifecycle import job_claim, job_fail, job_succeed
from domain.jobs.models import Job
from domain.jobs.outbox import outbox_send
from domain.jobs.rescue import jobs_rescue_orphans
from domain.jobs.services import job_cancel, job_replay
from tests.factories import EventFactory, JobFactory

pytestmark = pytest.mark.django_db


class Recording(JobHooks):
    """Hooks that write down what they are told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, set]] = []

    def jobs_sent(self, *, sent, given, now, in_statement, objects=True) -> None:
        self.calls.append(("sent", {j.event_id for j in sent}))

    def jobs_finished(self, *, event_ids) -> None:
        self.calls.append(("finished", set(event_ids)))

    def jobs_reopened(self, *, event_ids) -> None:
        self.calls.append(("reopened", set(event_ids)))


def test_each_moment_of_a_job_calls_its_hook(install_job_hooks):
    recorder = install_job_hooks(Recording())
    event = EventFactory()

    # sent: the hand-over to the broker
    job = JobFactory(event=event, handler="a")
    outbox_send([job])
    # finished: success, failure, cancellation, a rescue that buries the job
    job_succeed(job=job_claim(job_id=str(job.pk)), result=None)
    failed = JobFactory(event=event, handler="b")
    job_fail(job=job_claim(job_id=str(failed.pk)), exc=ValueError("no"))
    job_cancel(job=JobFactory(event=event, handler="c"))
    buried = JobFactory(event=event, handler="d", max_attempts=1)
    job_claim(job_id=str(buried.pk))
    jobs_rescue_orphans(older_than=timedelta(0))
    # reopened: a replay of a finished job
    job_replay(job=failed)

    assert [name for name, _ in recorder.calls] == [
        "sent", "finished", "finished", "finished", "finished", "reopened"]
    assert all(ids == {event.pk} for _, ids in recorder.calls)


def test_jobs_run_alone_with_the_default_hooks(install_job_hooks):
    # given no events app listening (the default hooks do nothing)
    install_job_hooks(JobHooks())
    event = EventFactory()
    job = JobFactory(event=event, handler="a")

    # when the job is sent and succeeds
    outbox_send([job])
    job_succeed(job=job_claim(job_id=str(job.pk)), result={"ok": True})

    # then the job's own rows are complete, and its event was left as it was
    job.refresh_from_db()
    assert job.status == "succeeded" and job.enqueued_at is not None
    event.refresh_from_db()
    assert event.status == EventStatus.PENDING
    # and with no events app to ask, no job comes from an event of any type
    assert not job_hooks.hooks().jobs_of_event_type(Job.objects.all(), "demo.ping").exists()
