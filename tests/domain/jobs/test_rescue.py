"""The orphan rescue judges running jobs by their leases: a lease lapsed past the grace means
the worker is gone; a live lease is never taken; after a gap in its own runs (the database was
down, leases lapsed for live workers too) it waits one run before judging."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from domain.common.redis import redis_client, redis_key
from domain.jobs.lifecycle import job_claim, jobs_renew_leases
from domain.jobs.models import AttemptOutcome, JobStatus
from domain.jobs.rescue import jobs_rescue_orphans
from tests.conftest import run_command
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def _running(lease_in: float, **fields):
    now = timezone.now()
    return JobFactory(status=JobStatus.RUNNING, attempts=1, started_at=now - timedelta(minutes=1),
                      lease_expires_at=now + timedelta(seconds=lease_in), worker="w@h", **fields)


@pytest.fixture
def watching():
    """The rescue ran a moment ago (as Beat runs it every few seconds)."""
    redis_client().set(redis_key("rescue", "last_run"), timezone.now().timestamp())


def test_a_claim_takes_a_lease_and_the_worker_renews_it():
    job = JobFactory()
    claimed = job_claim(job_id=str(job.pk), worker="w@h")
    lease = timedelta(seconds=settings.JOB_LEASE_SECONDS)
    assert claimed.lease_expires_at == claimed.started_at + lease

    # when its worker renews, the lease moves on; another worker's renewal does nothing
    assert jobs_renew_leases(job_ids=[str(job.pk)], worker="other@h") == 0
    assert jobs_renew_leases(job_ids=[str(job.pk)], worker="w@h") == 1
    job.refresh_from_db()
    assert job.lease_expires_at > claimed.lease_expires_at


def test_only_leases_lapsed_past_the_grace_are_taken(watching):
    grace = settings.ORPHAN_GRACE_SECONDS
    dead = _running(lease_in=-(grace + 1))
    just_lapsed = _running(lease_in=-(grace - 2))
    alive = _running(lease_in=5)

    assert jobs_rescue_orphans() == {"requeued": 1, "dead": 0}

    dead.refresh_from_db()
    assert dead.status == JobStatus.QUEUED and dead.lease_expires_at is None
    lost = dead.attempt_log.get()
    assert lost.outcome == AttemptOutcome.LOST
    assert "stopped renewing its lease" in lost.error_message
    for job in (just_lapsed, alive):
        job.refresh_from_db()
        assert job.status == JobStatus.RUNNING


def test_after_a_gap_in_its_runs_the_rescue_waits_one_run_before_judging_leases():
    # given a lease lapsed long ago (its worker could not renew while the database was down)
    # and no recent run of the rescue (it could not run either)
    redis_client().delete(redis_key("rescue", "last_run"))
    job = _running(lease_in=-60)

    # when the rescue runs for the first time after the gap, it takes nothing
    assert jobs_rescue_orphans() == {"requeued": 0, "dead": 0}
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING

    # and when a live worker renews in the meantime, the next run leaves the job alone
    jobs_renew_leases(job_ids=[str(job.pk)], worker="w@h")
    assert jobs_rescue_orphans() == {"requeued": 0, "dead": 0}
    # while a job nobody renewed is taken on that next run
    orphan = _running(lease_in=-60)
    assert jobs_rescue_orphans() == {"requeued": 1, "dead": 0}
    orphan.refresh_from_db()
    assert orphan.status == JobStatus.QUEUED


def test_jobs_claimed_before_leases_existed_are_judged_by_the_time_limit(watching):
    long_ago = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 3600)
    old = JobFactory(status=JobStatus.RUNNING, attempts=1, started_at=long_ago)
    recent = JobFactory(status=JobStatus.RUNNING, attempts=1, started_at=timezone.now())
    assert jobs_rescue_orphans() == {"requeued": 1, "dead": 0}
    old.refresh_from_db()
    recent.refresh_from_db()
    assert old.status == JobStatus.QUEUED and recent.status == JobStatus.RUNNING


def test_an_operator_asking_by_hand_gets_lapsed_leases_judged_at_once():
    # given no recent run of the rescue (Beat is not running) and a lease lapsed long ago
    redis_client().delete(redis_key("rescue", "last_run"))
    job = _running(lease_in=-60)

    # when an operator runs the relay command with the rescue
    out, _ = run_command("relay_outbox", rescue_orphans=True)

    # then the job is taken at once
    assert "orphans: requeued=1 dead=0" in out
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
