"""Email and in-app notifications end to end on the real worker thread: a send (the service
the API calls) → jobs on the real broker → emails to the real SMTP sink, items in the inbox,
and a digest sent by its carrier once the relay finds it due."""

from __future__ import annotations

import pytest

from domain.jobs.models import Job, JobStatus
from domain.jobs.outbox import outbox_relay
from domain.notifications.inbox import inbox_unread
from domain.notifications.models import (
    AttemptResult,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Digest,
    DigestState,
    InboxItem,
)
from tests.conftest import wait_for
from tests.notification_utils import comment_context, people, send

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def _delivered(notification) -> list[Delivery]:
    deliveries = list(Delivery.objects.filter(notification=notification))
    return deliveries if all(d.status == DeliveryStatus.DELIVERED for d in deliveries) else []


def test_a_send_to_three_recipients_reaches_their_mailboxes_and_inboxes(celery_worker_thread,
                                                                        smtp_sink):
    # given three recipients, by email and in-app
    recipients = people(3)

    # when a security alert is sent to them (what POST /api/v1/notifications calls)
    result = send(recipients=recipients, channels=["email", "in_app"],
                  correlation_id="flow-1")

    # then all six deliveries are delivered by the worker
    deliveries = wait_for(lambda: _delivered(result.notification), timeout=30,
                          message="six delivered deliveries")
    assert len(deliveries) == 6
    # and each recipient got one email, all three over one SMTP connection (one batch)
    messages = smtp_sink.wait_for(3)
    assert sorted(m["To"] for m in messages) == sorted(r["email"] for r in recipients)
    assert {m.connection for m in messages} == {1} and smtp_sink.connections == 1
    assert all(m.subject == "New sign-in to your account" for m in messages)
    by_id = {str(d.pk): d for d in deliveries}
    for message in messages:
        delivery = by_id[message["X-Conveyor-Delivery"]]
        assert delivery.address == message["To"]
        assert "Someone signed in from Lyon." in message.text
    # and each has one unread inbox item
    for recipient in recipients:
        [item] = InboxItem.objects.filter(recipient_id=recipient["id"])
        assert item.title == "New sign-in to your account"
        assert inbox_unread(recipient_id=recipient["id"]) == 1
    # and every delivery has exactly one attempt, delivered; every job succeeded
    for delivery in deliveries:
        attempts = list(DeliveryAttempt.objects.filter(delivery=delivery))
        assert [a.outcome for a in attempts] == [AttemptResult.DELIVERED]
        assert attempts[0].smtp_code == (250 if delivery.channel == "email" else None)
        assert delivery.attempts == 1
    jobs = Job.objects.filter(pk__in=[d.job_id for d in deliveries])
    assert {j.status for j in jobs} == {JobStatus.SUCCEEDED}
    assert {j.correlation_id for j in jobs} == {"flow-1"}


def test_a_digest_is_sent_once_its_window_closes(celery_worker_thread, smtp_sink, settings):
    # given a one-second digest window, and three comments for one reader in it
    settings.NOTIFICATION_DIGEST_WINDOWS = {"comment_added": 1}
    reader = {"id": "reader", "email": "reader@example.com"}
    for excerpt in ("one", "two", "three"):
        send("comment_added", context=comment_context(excerpt=excerpt), recipients=[reader],
             channels=["email"])

    # then nothing is sent while the window is open: the carrier's job waits in the database
    [digest] = Digest.objects.all()
    [carrier] = Job.objects.filter(kind="email_delivery")
    assert carrier.run_at == digest.closes_at and carrier.enqueued_at is None

    # when the relay (Beat runs it every 5 s) finds the carrier's job due and sends it
    wait_for(lambda: outbox_relay() > 0, timeout=10, message="the carrier's job due")

    # then the worker sends one email listing the three
    [message] = smtp_sink.wait_for(1)
    wait_for(lambda: Job.objects.get(pk=carrier.pk).status == JobStatus.SUCCEEDED,
             message="the carrier's job done")
    assert message.subject == "3 new comments on Launch plan"
    assert [line for line in message.text.splitlines() if line.startswith("Ada: ")] == [
        "Ada: one", "Ada: two", "Ada: three"]
    assert Digest.objects.get().state == DigestState.CLOSED
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}
    assert len(smtp_sink.received) == 1
