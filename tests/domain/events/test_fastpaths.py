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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_publish_outside_a_transaction_is_one_statement_and_a_replay_still_finds_the_first(
        broker):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from domain.access.services import api_key_create
    from domain.events.services import event_publish
    from domain.jobs.models import Job
    from domain.notifications.subscriptions import subscriptions

    key, _ = api_key_create(name="one statement", scopes=["events:publish"])
    # (which types webhook endpoints subscribe to is read once a second per process, not
    # per publish: read it now, as a warm process has)
    subscriptions.subscribed("demo.ping")

    # when an event is published outside any transaction, as an API request does
    with CaptureQueriesContext(connection) as queries:
        first = event_publish(event_type="demo.ping", payload={"message": "one"},
                              api_key=key, idempotency_key="k-1")

    # then the event and its job went in with one statement (no BEGIN, savepoint or COMMIT
    # of Django's: the statement is its own transaction), both rows committed; what follows
    # is the send's stamp (OUTBOX_SEND=inline here)
    statements = [q["sql"] for q in queries.captured_queries]
    assert statements[0].startswith('WITH w0 AS (INSERT INTO "events_event"')
    assert 'INSERT INTO "events_job"' in statements[0]
    assert not any("INSERT" in sql or "SAVEPOINT" in sql for sql in statements[1:])
    assert Job.objects.filter(event_id=first.event.pk).count() == 1

    # and the same key again fails that statement on the unique constraint, which leaves no
    # transaction broken: the replay reads the first event and writes nothing
    again = event_publish(event_type="demo.ping", payload={"message": "one"},
                          api_key=key, idempotency_key="k-1")
    assert not again.created and again.event.pk == first.event.pk
    assert [job.pk for job in again.jobs] == [job.pk for job in first.jobs]
    assert Job.objects.count() == 1


def test_a_success_closes_its_event_in_the_same_statement_only_when_no_other_job_is_open():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from domain.events.models import EventStatus
    from domain.jobs.lifecycle import jobs_claim, jobs_succeed
    from domain.jobs.models import JobStatus

    # given three events: one with a single job, one whose other job is still queued, and
    # one whose other job is dead; the first job of each claimed
    alone, waiting, with_dead = EventFactory(), EventFactory(), EventFactory()
    jobs = [JobFactory(event=alone, handler="a"), JobFactory(event=waiting, handler="a"),
            JobFactory(event=with_dead, handler="a")]
    JobFactory(event=waiting, handler="b")
    JobFactory(event=with_dead, handler="b", status=JobStatus.DEAD)
    claimed = jobs_claim(job_ids=[str(j.pk) for j in jobs], worker="w@h")

    # when their successes are recorded together
    with CaptureQueriesContext(connection) as queries:
        jobs_succeed(outcomes=[(job, None) for job in claimed])

    # then the single-job event completed and the one with a dead job failed, in the success's
    # own statement; the event with an open job stays open, and only it was rolled up after
    for event in (alone, waiting, with_dead):
        event.refresh_from_db()
    assert alone.status == EventStatus.COMPLETED and alone.completed_at is not None
    assert with_dead.status == EventStatus.FAILED
    assert waiting.status != EventStatus.COMPLETED and waiting.completed_at is None
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) == 2, statements
    assert "finished_events" in statements[0]
    assert str(waiting.pk) in statements[1] and str(alone.pk) not in statements[1]
