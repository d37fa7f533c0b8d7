"""The events' fast path (dispatched in the same statement as the jobs' stamp) leaves exactly
the rows of its portable version (the stamp, then a statement of its own)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from domain.events import fastpaths
from domain.events.models import Event
from domain.jobs import fastpaths as job_fastpaths
from domain.jobs.models import Job
from tests.factories import EventFactory, JobFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _world(earlier) -> tuple[list[Event], list[Job]]:
    """Three pending events: one whose two jobs are both sent now, one whose second job is not
    sent (it stays pending), one already dispatched (it keeps its time)."""
    events = [EventFactory(), EventFactory(),
              EventFactory(status="dispatched", dispatched_at=earlier)]
    jobs = [JobFactory(event=events[0], handler="a"), JobFactory(event=events[0], handler="b"),
            JobFactory(event=events[1], handler="a"), JobFactory(event=events[1], handler="b"),
            JobFactory(event=events[2], handler="a")]
    return events, jobs


def _state(events: list[Event], jobs: list[Job]) -> list:
    return ([Event.objects.values("status", "dispatched_at").get(pk=e.pk) for e in events]
            + [Job.objects.values("enqueued_at").get(pk=j.pk) for j in jobs])


def test_dispatched_in_the_stamp_statement_equals_the_portable_statements():
    now = timezone.now()
    earlier = now - timedelta(minutes=1)
    fast_events, fast_jobs = _world(earlier)
    portable_events, portable_jobs = _world(earlier)
    sent = [0, 1, 2, 4]  # job 3 (the second job of event 1) is held back

    # when one world goes through the PostgreSQL statement, its twin through the portable ones
    job_fastpaths._stamp_pg([str(fast_jobs[n].pk) for n in sent], now,
                            fastpaths.dispatched_after_stamp_sql())
    job_fastpaths._stamp_portable([str(portable_jobs[n].pk) for n in sent], now)
    fastpaths.mark_dispatched({portable_jobs[n].event_id for n in sent}, now)

    # then both worlds hold the same rows
    fast, portable = _state(fast_events, fast_jobs), _state(portable_events, portable_jobs)
    assert fast == portable
    assert [e["status"] for e in fast[:3]] == ["dispatched", "pending", "dispatched"]
    assert fast[2]["dispatched_at"] < now  # an event already dispatched keeps its time
