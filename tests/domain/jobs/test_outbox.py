"""Accepted means durable: the outbox relay sends what the broker missed, and a failure after
commit never reaches the caller."""

import logging
import threading
from contextlib import ExitStack
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from domain.events.models import Event, EventStatus
from domain.jobs.models import Job
from domain.jobs.outbox import outbox_enqueue_on_commit, outbox_relay, outbox_send
from tests.broker_utils import UNREACHABLE_BROKER, broker_at
from tests.conftest import queued_job_ids, queued_messages
from tests.database_utils import database_unreachable
from tests.factories import EventFactory, JobFactory


@pytest.mark.django_db
def test_publish_with_broker_down_is_accepted_and_relayed_later(
        client_all, broker, django_capture_on_commit_callbacks):
    # given the broker is unreachable
    with broker_at(UNREACHABLE_BROKER), django_capture_on_commit_callbacks(execute=True):
        # when a client publishes
        response = client_all.post(reverse("event-publish"),
                                   {"type": "demo.ping", "payload": {}}, format="json")
    # then the event is accepted and durable, but not yet dispatched
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    event = Event.objects.get(pk=response.json()["id"])
    job = event.jobs.get()
    assert event.status == EventStatus.PENDING and job.enqueued_at is None
    assert queued_messages(broker, "events") == []

    # when the relay runs with the broker back
    assert outbox_relay(grace_seconds=0) == 1

    # then the job is on the queue and the event dispatched
    messages = queued_messages(broker, "events")
    assert [m["headers"]["id"] for m in messages] == [str(job.pk)]
    event.refresh_from_db()
    job.refresh_from_db()
    assert event.status == EventStatus.DISPATCHED and job.enqueued_at is not None
    # and a second run has nothing left to send
    assert outbox_relay(grace_seconds=0) == 0


@pytest.mark.django_db
def test_an_error_of_a_class_the_outbox_does_not_list_is_logged_once_and_raised_nowhere(
        broker, caplog):
    # given two committed jobs, the second of a kind this process does not know (retired by a
    # deploy while the job waited), whose send fails with an error no broker list names
    good = JobFactory()
    retired = JobFactory(kind="retired.kind")

    # when they are handed to the broker
    with caplog.at_level(logging.WARNING, logger="domain.jobs.outbox"):
        sent = outbox_send([good, retired], max_batch=1)

    # then nothing is raised: the first is on the queue and stamped, the second left for the
    # relay, in memory as in its row
    assert sent == [good]
    assert queued_job_ids(broker, "events") == [str(good.pk)]
    assert good.enqueued_at is not None and retired.enqueued_at is None
    retired.refresh_from_db()
    assert retired.enqueued_at is None
    # and the failure is logged once, with its traceback
    records = [r for r in caplog.records if r.name == "domain.jobs.outbox"]
    assert len(records) == 1, caplog.text
    assert records[0].exc_info is not None and "sent=1 unsent=1" in records[0].getMessage()


@pytest.mark.django_db(transaction=True)
def test_the_database_gone_right_after_commit_leaves_the_event_pending_and_the_jobs_for_the_relay(
        broker, caplog):
    # given an event and its job being written, and the database going away the moment the
    # transaction commits (the callback registered first runs first)
    event = EventFactory.build()
    job = JobFactory.build(event=event)
    with (ExitStack() as outage, caplog.at_level(logging.WARNING, logger="domain.jobs.outbox"),
          transaction.atomic()):
        event.save()
        job.save()
        transaction.on_commit(lambda: outage.enter_context(database_unreachable()))
        # when the job is handed to the broker after commit
        outbox_enqueue_on_commit([job])

    # then nothing was raised: the message went out, the stamp could not be written, and the
    # objects the caller answers from say what the rows say: not handed over, event pending
    assert queued_job_ids(broker, "events") == [str(job.pk)]
    assert job.enqueued_at is None and event.status == EventStatus.PENDING
    job.refresh_from_db()
    event.refresh_from_db()
    assert job.enqueued_at is None and event.status == EventStatus.PENDING
    records = [r for r in caplog.records if r.name == "domain.jobs.outbox"]
    assert len(records) == 1 and records[0].exc_info is not None

    # and the relay sends it again (the claim lets one message through) and the event follows
    assert outbox_relay(grace_seconds=0) == 1
    event.refresh_from_db()
    assert event.status == EventStatus.DISPATCHED


@pytest.mark.django_db
def test_relay_leaves_recent_and_future_jobs_alone(broker):
    now = timezone.now()
    JobFactory(created_at=now)  # within the grace period: its on_commit send may be running
    JobFactory(created_at=now - timedelta(minutes=5), run_at=now + timedelta(hours=1))
    due = JobFactory(created_at=now - timedelta(minutes=5),
                     run_at=now - timedelta(seconds=1))
    assert outbox_relay(grace_seconds=60) == 1
    assert [m["headers"]["id"] for m in queued_messages(broker, "events")] == [str(due.pk)]


@pytest.mark.django_db
def test_relay_skips_finished_and_already_enqueued_jobs(broker):
    old = timezone.now() - timedelta(minutes=5)
    JobFactory(created_at=old, status="succeeded")
    JobFactory(created_at=old, status="cancelled")
    # handed over a moment ago: its message is on its way (OUTBOX_LOST_SECONDS has not passed)
    JobFactory(created_at=old, enqueued_at=timezone.now() - timedelta(seconds=10))
    assert outbox_relay(grace_seconds=0) == 0


@pytest.mark.django_db
def test_relay_resends_within_minutes_a_job_whose_queue_lost_its_messages(broker, settings):
    # given a job handed over two minutes ago (past OUTBOX_LOST_SECONDS, far from the 30-minute
    # stale re-send) that never started, and its queue empty: the message vanished (an
    # evicting or restarted Redis)
    assert settings.OUTBOX_LOST_SECONDS < 120 < settings.OUTBOX_STALE_SECONDS
    two_minutes_ago = timezone.now() - timedelta(minutes=2)
    job = JobFactory(created_at=two_minutes_ago, enqueued_at=two_minutes_ago)
    assert queued_messages(broker, "events") == []

    # when the relay runs, it sends the job again
    assert outbox_relay(grace_seconds=0) == 1
    assert queued_job_ids(broker, "events") == [str(job.pk)]


@pytest.mark.django_db
def test_relay_leaves_a_job_alone_while_its_queue_still_holds_messages(broker):
    # given the same job, but its queue holds messages (a backlog: the job's may be in it)
    two_minutes_ago = timezone.now() - timedelta(minutes=2)
    waiting = JobFactory(created_at=two_minutes_ago, enqueued_at=two_minutes_ago)
    backlog = JobFactory(created_at=timezone.now())
    assert outbox_send([backlog]) == [backlog]

    # then the relay does not re-send the waiting job (until it is stale)
    assert outbox_relay(grace_seconds=0) == 0
    assert queued_job_ids(broker, "events") == [str(backlog.pk)]
    waiting.refresh_from_db()
    assert waiting.enqueued_at == two_minutes_ago


@pytest.mark.django_db
def test_relay_with_broker_still_down_sends_nothing_and_keeps_rows(broker):
    job = JobFactory(created_at=timezone.now() - timedelta(minutes=1))
    with broker_at(UNREACHABLE_BROKER):
        assert outbox_relay(grace_seconds=0) == 0
    job.refresh_from_db()
    assert job.enqueued_at is None


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_relays_never_send_the_same_job(private_broker):
    # given due jobs, and another relay holding row locks on some of them
    old = timezone.now() - timedelta(minutes=1)
    locked = [JobFactory(created_at=old) for _ in range(3)]
    free = [JobFactory(created_at=old) for _ in range(2)]
    holding, release = threading.Event(), threading.Event()

    def other_relay():
        with transaction.atomic():
            list(Job.objects.select_for_update().filter(pk__in=[j.pk for j in locked]))
            holding.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=other_relay)
    thread.start()
    holding.wait(10)
    try:
        # when this relay runs, it skips the locked rows instead of waiting or double-sending
        assert outbox_relay(grace_seconds=0) == 2
    finally:
        release.set()
        thread.join()
    # then exactly the free jobs were handed over: their messages, and their stamps
    assert sorted(private_broker.job_ids("events")) == sorted(str(j.pk) for j in free)
    stamped = set(Job.objects.filter(enqueued_at__isnull=False).values_list("pk", flat=True))
    assert stamped == {j.pk for j in free}
