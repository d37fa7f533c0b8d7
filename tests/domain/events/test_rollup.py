"""The events' side of the jobs' hooks: installed at start-up, an event follows its jobs, and
each hook runs where the contract puts it (the roll-up after the jobs' commit, the reopening
inside the replay's transaction)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from domain.events.models import EventStatus
from domain.events.rollup import EventRollup
from domain.jobs import hooks as job_hooks
from domain.jobs.lifecycle import job_claim, job_fail, job_succeed
from domain.jobs.models import Job
from domain.jobs.outbox import outbox_send
from domain.jobs.services import job_replay
from tests.factories import EventFactory, JobFactory


@pytest.mark.django_db
def test_the_events_app_installs_its_roll_up_at_start_up():
    assert isinstance(job_hooks.hooks(), EventRollup)
    assert "stamped" in job_hooks.hooks().sent_sql


@pytest.mark.django_db
def test_with_the_events_roll_up_the_event_follows(install_job_hooks):
    # the same, with the roll-up the events app installs
    install_job_hooks(EventRollup())
    event = EventFactory()
    job = JobFactory(event=event, handler="a", created_at=timezone.now())

    outbox_send([job])
    event.refresh_from_db()
    assert event.status == EventStatus.DISPATCHED
    job_succeed(job=job_claim(job_id=str(job.pk)), result=None)
    event.refresh_from_db()
    assert event.status == EventStatus.COMPLETED
    # and the events app answers which jobs came from events of a type
    other = JobFactory(event=EventFactory(type="product.updated"), handler="a")
    picked = job_hooks.hooks().jobs_of_event_type(Job.objects.all(), "demo.ping")
    assert list(picked) == [job] and other not in picked


class WhereCalled(EventRollup):
    """The real roll-up, noting whether each hook ran inside a transaction."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def jobs_finished(self, *, event_ids) -> None:
        self.seen.append(("finished", connection.in_atomic_block))
        super().jobs_finished(event_ids=event_ids)

    def jobs_reopened(self, *, event_ids) -> None:
        self.seen.append(("reopened", connection.in_atomic_block))
        super().jobs_reopened(event_ids=event_ids)


@pytest.mark.django_db(transaction=True)
def test_the_roll_up_runs_after_the_jobs_commit_and_reopening_inside_the_replay(install_job_hooks):
    # given the real roll-up, on a database where each service commits for real
    where = install_job_hooks(WhereCalled())
    event = EventFactory()
    job = JobFactory(event=event, handler="a")

    # when the job fails for good, and an operator replays it
    job_fail(job=job_claim(job_id=str(job.pk)), exc=ValueError("no"))
    job_replay(job=Job.objects.get(pk=job.pk))

    # then the roll-up ran after the failure's commit (so of two jobs finishing at once the
    # later sees both), and the reopening inside the replay's transaction (all or nothing)
    assert where.seen == [("finished", False), ("reopened", True)]
    event.refresh_from_db()
    assert event.status == EventStatus.DISPATCHED
