"""Retention of delivery records (domain/notifications/retention.py): settled deliveries go
with their attempts; pending, sending, retrying and parked ones stay, as does one whose job is
still live; messages, notifications and digests go once no delivery is left; read inbox
items go, unread ones stay."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from domain.jobs.models import JobStatus
from domain.notifications.models import (
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Digest,
    DigestState,
    InboxItem,
    InboxState,
    Message,
    Notification,
    WebhookEndpoint,
    new_secret,
)
from domain.notifications.retention import (
    deliveries_prune,
    digests_prune,
    inbox_prune,
    messages_prune,
    notifications_prune,
)
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db(transaction=True)

NOW = timezone.now()
CUTOFF = NOW - timedelta(days=30)
OLD = NOW - timedelta(days=45)


def prune_all() -> None:
    for prune in (deliveries_prune, messages_prune, notifications_prune, digests_prune):
        assert prune(cutoff=CUTOFF).complete


@pytest.fixture
def endpoint() -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(url="https://example.com/hook", secret=new_secret())


def message(at=OLD) -> Message:
    return Message.objects.create(event_id=uuid.uuid4(), type="demo.ping", timestamp=at,
                                  created_at=at)


def delivery(endpoint, status: str, *, msg: Message | None = None, at=OLD, attempts: int = 2,
             **fields) -> Delivery:
    made = Delivery.objects.create(message=msg or message(at), endpoint=endpoint, status=status,
                                   created_at=at, last_attempt_at=at, **fields)
    for number in range(1, attempts + 1):
        DeliveryAttempt.objects.create(delivery=made, number=number, at=at, outcome="failed")
    return made


def test_settled_old_deliveries_go_with_their_attempts_and_open_ones_stay(endpoint):
    # given old deliveries in every status, and a recent delivered one
    old = {s: delivery(endpoint, s) for s in DeliveryStatus.values}
    recent = delivery(endpoint, DeliveryStatus.DELIVERED, at=NOW)

    # when the delivery records are pruned
    report = deliveries_prune(cutoff=CUTOFF)

    # then the delivered, failed and skipped ones are gone with their attempts
    settled = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)
    assert not Delivery.objects.filter(pk__in=[old[s].pk for s in settled]).exists()
    assert report.deleted == {"notifications_delivery": 3, "notifications_deliveryattempt": 6}
    # and every pending, sending, retrying or parked one stays with its attempts
    for status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.RETRYING,
                   DeliveryStatus.PARKED):
        assert DeliveryAttempt.objects.filter(delivery=old[status]).count() == 2, status
    assert Delivery.objects.filter(pk=recent.pk).exists()


def test_a_settled_delivery_whose_job_is_still_live_stays(endpoint):
    job = JobFactory(status=JobStatus.RETRYING, created_at=OLD)
    kept = delivery(endpoint, DeliveryStatus.FAILED, job_id=job.pk)
    tried_lately = delivery(endpoint, DeliveryStatus.FAILED)
    Delivery.objects.filter(pk=tried_lately.pk).update(last_attempt_at=NOW)

    deliveries_prune(cutoff=CUTOFF)

    assert Delivery.objects.filter(pk__in=[kept.pk, tried_lately.pk]).count() == 2


def test_messages_go_once_no_delivery_is_left(endpoint):
    # given two old messages: one with a delivered delivery, one with a pending one
    done, waiting = message(), message()
    delivery(endpoint, DeliveryStatus.DELIVERED, msg=done)
    delivery(endpoint, DeliveryStatus.PENDING, msg=waiting)

    # when everything is pruned in order
    prune_all()

    # then the message whose delivery went is gone; the one with a pending delivery stays
    assert list(Message.objects.values_list("pk", flat=True)) == [waiting.pk]


def test_notifications_digests_and_inbox_items_follow_their_deliveries():
    # given an old notification with an in-app delivery (its inbox item read) and an email
    # delivery that carried a closed digest, and an open digest
    note = Notification.objects.create(template="t", category="orders", created_at=OLD)
    in_app = Delivery.objects.create(notification=note, channel=Channel.IN_APP,
                                     recipient_id="r1", status=DeliveryStatus.DELIVERED,
                                     created_at=OLD)
    carrier = Delivery.objects.create(notification=note, channel=Channel.EMAIL,
                                      recipient_id="r2", status=DeliveryStatus.DELIVERED,
                                      created_at=OLD)
    closed = Digest.objects.create(template="t", recipient_id="r2", state=DigestState.CLOSED,
                                   opened_at=OLD, closes_at=OLD, carrier=carrier)
    Delivery.objects.filter(pk=carrier.pk).update(digest=closed)
    still_open = Digest.objects.create(template="t", recipient_id="r3", closes_at=OLD)
    item = InboxItem.objects.create(recipient_id="r1", delivery=in_app, notification=note,
                                    template="t", category="orders", title="Hi",
                                    state=InboxState.READ, created_at=OLD)

    # when the notifications' records are pruned
    prune_all()

    # then the deliveries, the notification and the closed digest are gone
    assert not Delivery.objects.exists() and not Notification.objects.exists()
    assert list(Digest.objects.values_list("pk", flat=True)) == [still_open.pk]
    # and the inbox item stays (its own retention), pointing at nothing
    item.refresh_from_db()
    assert item.delivery_id is None and item.notification_id is None


def test_read_and_archived_inbox_items_go_unread_ones_stay():
    def item(state: str, at=OLD) -> InboxItem:
        return InboxItem.objects.create(recipient_id="r", template="t", category="c",
                                        title="x", state=state, created_at=at)

    unread, read, archived = (item(s) for s in (InboxState.UNREAD, InboxState.READ,
                                                 InboxState.ARCHIVED))
    recent_read = item(InboxState.READ, at=NOW)

    report = inbox_prune(cutoff=CUTOFF)

    assert set(InboxItem.objects.values_list("pk", flat=True)) == {unread.pk, recent_read.pk}
    assert report.deleted == {"notifications_inboxitem": 2}
    assert not InboxItem.objects.filter(pk__in=[read.pk, archived.pk]).exists()
