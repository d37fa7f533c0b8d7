"""The outbox dispatcher (OUTBOX_SEND=background): a committed job reaches the broker from the
process's dispatcher thread, jobs of several requests share a message and a stamp, and an exit
sends what is waiting."""

from __future__ import annotations

import os

import pytest

from domain.events.models import Event, EventStatus
from domain.events.services import event_publish
from domain.jobs.models import Job
from domain.jobs.outbox import OutboxDispatcher, dispatcher
from tests.conftest import queued_job_ids, queued_tasks, wait_for
from tests.factories import EventFactory, JobFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _all_stamped(n: int) -> bool:
    return Job.objects.filter(enqueued_at__isnull=False).count() == n


def test_a_publish_answers_before_the_send_and_the_dispatcher_sends_and_stamps_it(
        broker, settings):
    # given the production setting: the dispatcher thread sends
    settings.OUTBOX_SEND = "background"

    # when an event is published outside any transaction (as a request does)
    result = event_publish(event_type="demo.ping", payload={"message": "hi"})

    # then the event and its job are committed, and the objects the answer is rendered from
    # are left alone by the dispatcher (they said "pending" when the answer was made)
    assert Event.objects.filter(pk=result.event.pk).exists()
    assert result.event.status == EventStatus.PENDING

    # and within moments the job is on its queue, stamped, and its event dispatched
    wait_for(lambda: _all_stamped(1), timeout=10)
    assert queued_job_ids(broker, "events") == [str(result.jobs[0].pk)]
    assert Event.objects.get(pk=result.event.pk).status == EventStatus.DISPATCHED
    assert result.event.status == EventStatus.PENDING


def test_jobs_committed_by_several_requests_share_one_message_and_one_round(broker):
    # given three requests' committed noop jobs waiting for a dispatcher that has not run yet
    # (its queue filled before its thread starts, as when the thread is busy with the
    # previous round)
    jobs = [JobFactory(kind="noop", params={}, event=EventFactory()) for _ in range(3)]
    own = OutboxDispatcher()
    own._pid = os.getpid()  # this process's dispatcher, thread not started yet
    for job in jobs:
        own._queue.put([job])

    # when its thread runs
    own._ensure_running()
    assert own.flush(timeout=10)

    # then the three jobs of a micro-batched kind travel in one message, and one round
    # stamped them all and dispatched their events
    tasks = queued_tasks(broker, "events")
    assert len(tasks) == 1
    assert sorted(tasks[0]["arg"]) == sorted(str(job.pk) for job in jobs)
    assert _all_stamped(3)
    assert set(Event.objects.values_list("status", flat=True)) == {EventStatus.DISPATCHED}


def test_flush_sends_what_is_waiting_and_stops_the_thread(broker, settings):
    # given a job handed to the process's dispatcher
    settings.OUTBOX_SEND = "background"
    result = event_publish(event_type="demo.ping", payload={"message": "exit"})

    # when the process exits (atexit calls flush)
    finished = dispatcher.flush(timeout=10)

    # then the job was sent before the thread stopped, and a later submit starts a new thread
    assert finished
    assert queued_job_ids(broker, "events") == [str(result.jobs[0].pk)]
    assert _all_stamped(1)
    event_publish(event_type="demo.ping", payload={"message": "after"})
    wait_for(lambda: _all_stamped(2), timeout=10)


def test_with_a_full_backlog_the_committing_thread_sends_its_own_jobs(broker, settings):
    # given a dispatcher that already has OUTBOX_DISPATCH_MAX_JOBS waiting for its thread
    settings.OUTBOX_DISPATCH_MAX_JOBS = 10
    own = OutboxDispatcher()
    own._ensure_running()
    own._waiting = 10
    job = JobFactory(kind="noop", params={}, event=EventFactory())

    # when a request's jobs are submitted
    own.submit([job])

    # then they were sent and stamped before submit returned, in the caller's thread (its
    # objects say so too), and nothing was added to the thread's backlog
    assert queued_job_ids(broker, "events") == [str(job.pk)]
    assert job.enqueued_at is not None and _all_stamped(1)
    assert own._waiting == 10
    own._waiting = 0
    assert own.flush(timeout=10)


@pytest.mark.postgres  # another connection's view, read with psycopg2
def test_no_202_is_sent_before_its_commit(client_all, settings):
    """The sequence the README states: the event and its jobs are committed, then the answer,
    then the dispatcher's send. Another connection sees both rows as soon as the 202 is in."""
    import psycopg2
    from django.db import connections
    from django.urls import reverse

    settings.OUTBOX_SEND = "background"
    other = psycopg2.connect(**connections["default"].get_connection_params())
    other.autocommit = True
    try:
        for _ in range(20):
            response = client_all.post(reverse("event-publish"),
                                       {"type": "demo.ping", "payload": {"message": "c"}},
                                       format="json")
            assert response.status_code == 202
            body = response.json()
            with other.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM events_event WHERE id = %s", [body["id"]])
                assert cursor.fetchone()[0] == 1
                cursor.execute("SELECT count(*) FROM events_job WHERE id = %s",
                               [body["jobs"][0]["id"]])
                assert cursor.fetchone()[0] == 1
    finally:
        other.close()
        # The process's dispatcher thread is done before the test's teardown empties the
        # tables: its last stamping UPDATE and the teardown's TRUNCATE once deadlocked (CI).
        assert dispatcher.flush(timeout=10)
