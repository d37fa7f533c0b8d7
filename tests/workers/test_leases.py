"""The heartbeat: while a worker process runs a job, its lease keeper renews the lease; once the
run ends, it stops."""

from __future__ import annotations

import pytest

from domain.jobs.lifecycle import job_claim
from tests.factories import JobFactory
from workers.leases import LeaseKeeper

pytestmark = pytest.mark.django_db(transaction=True)


def test_leases_are_renewed_while_held_and_only_then():
    keeper = LeaseKeeper()
    job = JobFactory()
    claimed = job_claim(job_id=str(job.pk), worker="w@h")

    # while the run holds the job, a renewal round extends its lease
    with keeper.hold([job.pk], "w@h"):
        assert keeper.held() == {str(job.pk)}
        assert keeper.renew() == 1
        job.refresh_from_db()
        renewed = job.lease_expires_at
        assert renewed > claimed.lease_expires_at

    # once the run is over, nothing is held and nothing renewed
    assert keeper.held() == set()
    assert keeper.renew() == 0
    job.refresh_from_db()
    assert job.lease_expires_at == renewed


def test_the_keeper_thread_runs_in_the_process_that_holds_jobs():
    keeper = LeaseKeeper()
    job = JobFactory()
    job_claim(job_id=str(job.pk), worker="w@h")
    with keeper.hold([job.pk], "w@h"):
        assert keeper._thread is not None and keeper._thread.is_alive()


def test_a_renewal_round_leaves_no_connection_open_with_conn_max_age_0():
    # given the test settings (CONN_MAX_AGE=0: a connection lives for one unit of work) and a
    # job held by a keeper, renewed from a thread of its own as the keeper's thread does
    import threading

    from django.db import connection

    keeper = LeaseKeeper()
    job = JobFactory()
    job_claim(job_id=str(job.pk), worker="w@h")
    after: list[bool] = []

    def round_() -> None:
        assert keeper.renew() == 1
        after.append(connection.connection is None)

    # when one renewal round runs
    with keeper.hold([job.pk], "w@h"):
        thread = threading.Thread(target=round_)
        thread.start()
        thread.join(timeout=10)

    # then its connection was closed after the round, not left open until a next round with
    # jobs to renew (which an idle worker never has: the test database could not be dropped)
    assert after == [True]


def test_a_job_adopted_past_its_task_is_renewed_until_released():
    keeper = LeaseKeeper()
    job = JobFactory()
    job_claim(job_id=str(job.pk), worker="w@h")

    # given a task that hands its job on as it ends (a webhook still waiting on its receiver)
    with keeper.hold([job.pk], "w@h"):
        keeper.adopt([job.pk], "w@h")

    # then the lease is still renewed after the task's hold ends
    assert keeper.held() == {str(job.pk)}
    assert keeper.renew() == 1

    # and not once the late work is settled
    keeper.release([job.pk])
    assert keeper.held() == set()
    assert keeper.renew() == 0
