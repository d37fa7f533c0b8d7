"""Reads of domain/jobs/selectors.py that must stay cheap on a table of millions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from domain.common.fastpaths import on_postgresql
from domain.jobs.models import Job, JobStatus
from domain.jobs.selectors import _due, jobs_sent_before
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def test_the_jobs_ahead_are_counted_per_kind_of_the_queue_in_hand_over_order():
    # given waiting jobs of two kinds handed over at known times, and finished ones
    start = timezone.now() - timedelta(hours=1)
    for minute in range(5):
        JobFactory(kind="noop", enqueued_at=start + timedelta(minutes=minute))
        JobFactory(kind="cache_invalidation", enqueued_at=start + timedelta(minutes=minute))
    JobFactory(kind="noop", enqueued_at=start, status=JobStatus.SUCCEEDED)
    job = Job.objects.get(kind="noop", enqueued_at=start + timedelta(minutes=3))

    # then the jobs ahead are those of the queue's kinds sent before it and not started
    assert jobs_sent_before(job=job, kinds={"noop"}) == 3
    assert jobs_sent_before(job=job, kinds={"noop", "cache_invalidation"}) == 6
    # counted up to the limit, across kinds
    assert jobs_sent_before(job=job, kinds={"noop", "cache_invalidation"}, limit=4) == 4


@pytest.mark.skipif(not on_postgresql(), reason="the partial index's plan is PostgreSQL's")
def test_the_jobs_ahead_are_read_through_the_partial_index_of_the_waiting_jobs():
    # given the query jobs_sent_before makes for one kind
    job = JobFactory(kind="noop", enqueued_at=timezone.now())
    query = _due(Job.objects.filter(kind="noop", enqueued_at__lt=job.enqueued_at),
                 timezone.now()).order_by("enqueued_at")[:10_000]

    # then the index's condition covers it (a sequential scan ruled out, the planner must be
    # able to use the index: its WHERE is implied by the query's)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = query.explain()
    assert "job_waiting_kind_enqueued" in plan, plan
