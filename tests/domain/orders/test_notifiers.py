"""orders.customer_shipped: an `order.shipped` event sends its customer the `order_shipped`
notification, by email and in-app, once; beside it, the webhooks of subscribed endpoints.

The jobs are run here by calling their bodies (the services the tasks call) in the test's
transaction; tests/flows/test_order_shipped_flow.py runs the same on a real worker."""

from __future__ import annotations

import pytest
from django.core import mail

from domain.events.models import Event
from domain.jobs.models import Job
from domain.notifications.deliveries import webhooks_fan_out
from domain.notifications.emails import emails_deliver
from domain.notifications.inbox import inbox_deliver, inbox_items, inbox_unread
from domain.notifications.models import (
    Delivery,
    DeliveryStatus,
    Notification,
    WebhookEndpoint,
    new_secret,
)
from domain.notifications.notifiers import notify_from_events
from domain.notifications.sending import NO_ADDRESS
from domain.orders.models import OrderStatus
from domain.orders.services import order_ship
from tests.factories import CustomerFactory, OrderFactory

pytestmark = pytest.mark.django_db

SHIPMENT = {"carrier": "DHL", "tracking_number": "JD0146000062",
            "tracking_url": "https://www.dhl.com/track?id=JD0146000062"}


def shipped(order, **shipment) -> tuple[Event, Job]:
    """Ship the order; its event and the event's one notifier job."""
    order_ship(order=order.pk, **(shipment or SHIPMENT))
    event = Event.objects.get(type="order.shipped")
    return event, Job.objects.get(event_id=event.pk, kind="event_notification")


def test_a_shipped_order_notifies_its_customer_by_email_and_in_app_once():
    # given a customer's placed order, shipped: one event, one event_notification job
    customer = CustomerFactory(name="Ada Lovelace", email="ada@example.com")
    order = OrderFactory(number="ORD-1001", customer=customer)
    event, job = shipped(order)
    assert Job.objects.filter(event_id=event.pk).count() == 1

    # when the notifier's job runs, twice (a redelivered message, a replay)
    first = notify_from_events([job])
    second = notify_from_events([job])

    # then one notification, from this event and notifier, with the order's context
    notification = Notification.objects.get()
    assert first[0] == {"notification": str(notification.pk), "created": True,
                        "deliveries": 2}
    assert second[0] == {**first[0], "created": False}
    assert (notification.template, notification.category) == ("order_shipped", "orders")
    assert notification.source == f"{event.pk}:orders.customer_shipped"
    assert notification.event_id == event.pk
    assert notification.context == {"order_number": "ORD-1001", "customer_name": "Ada Lovelace",
                                    **SHIPMENT}

    # and one email and one in-app delivery to the customer, each with its job
    deliveries = {d.channel: d for d in Delivery.objects.filter(notification=notification)}
    assert set(deliveries) == {"email", "in_app"}
    assert {d.recipient_id for d in deliveries.values()} == {str(customer.pk)}
    assert deliveries["email"].address == "ada@example.com"
    assert {j.kind for j in Job.objects.filter(pk__in=[d.job_id for d in deliveries.values()])
            } == {"email_delivery", "inbox_delivery"}


def test_the_email_and_the_inbox_item_name_the_order_and_its_tracking():
    # given the notification of a shipped order
    customer = CustomerFactory(name="Ada Lovelace", email="ada@example.com")
    order = OrderFactory(number="ORD-1001", customer=customer)
    _, job = shipped(order)
    notify_from_events([job])
    deliveries = {d.channel: d for d in Delivery.objects.all()}

    # when its email and in-app jobs run (Django's in-memory email backend)
    emails_deliver([Job.objects.get(pk=deliveries["email"].job_id)])
    inbox_deliver([Job.objects.get(pk=deliveries["in_app"].job_id)])

    # then the email has the order number in its subject, and the tracking in both parts
    [email] = mail.outbox
    assert email.to == ["ada@example.com"]
    assert email.subject == "Your order ORD-1001 has shipped"
    assert "Hello Ada Lovelace," in email.body
    assert "Tracking number: JD0146000062" in email.body
    assert "Track it: https://www.dhl.com/track?id=JD0146000062" in email.body
    [(html, mime)] = email.alternatives
    assert mime == "text/html"
    assert '<a href="https://www.dhl.com/track?id=JD0146000062">' in html
    assert "<strong>ORD-1001</strong>" in html

    # and the customer's inbox has one unread item with the same title
    [item] = inbox_items(recipient_id=str(customer.pk))
    assert item.title == "Your order ORD-1001 has shipped"
    assert "JD0146000062" in item.body
    assert inbox_unread(recipient_id=str(customer.pk)) == 1
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.DELIVERED}


def test_a_customer_without_email_gets_the_in_app_item_and_a_skipped_email():
    # given a customer who gave no email address
    customer = CustomerFactory(email="")
    _, job = shipped(OrderFactory(customer=customer), carrier="UPS", tracking_number="1Z9")

    # when the notifier runs
    notify_from_events([job])

    # then the in-app delivery waits for its job, and the email is skipped, saying why
    deliveries = {d.channel: d for d in Delivery.objects.all()}
    assert deliveries["in_app"].status == DeliveryStatus.PENDING
    assert (deliveries["email"].status, deliveries["email"].reason) == (
        DeliveryStatus.SKIPPED, NO_ADDRESS)
    assert "tracking_url" not in Notification.objects.get().context


def test_an_inactive_customer_is_sent_nothing():
    # given a shipped order whose customer was deactivated before the job ran
    customer = CustomerFactory()
    _, job = shipped(OrderFactory(customer=customer))
    customer.is_active = False
    customer.save()

    # when the notifier runs, then it sends nothing, and says so (the job succeeds)
    [answer] = notify_from_events([job])
    assert answer == {"skipped": "notifier orders.customer_shipped sends nothing for this event"}
    assert not Notification.objects.exists()


@pytest.mark.parametrize("change", ["deleted", "cancelled"])
def test_an_order_gone_or_cancelled_since_is_not_announced(change):
    # given a shipped order, then deleted or cancelled by an operator before the job ran
    order = OrderFactory()
    _, job = shipped(order)
    if change == "deleted":
        order.delete()
    else:
        order.__class__.objects.filter(pk=order.pk).update(status=OrderStatus.CANCELLED)

    # when the notifier runs, then nothing is sent
    [answer] = notify_from_events([job])
    assert "skipped" in answer
    assert not Notification.objects.exists()


def test_a_subscribed_webhook_endpoint_gets_its_fan_out_beside_the_notifier(make_client):
    # given a key that ships orders and has an endpoint subscribed to order.shipped
    client = make_client(["orders:write", "webhooks:manage"])
    endpoint = WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook",
                                              api_key=client.api_key, secret=new_secret(),
                                              event_types=["order.shipped"])
    order = OrderFactory(number="ORD-2002")

    # when the key ships an order
    response = client.post(f"/api/v1/orders/{order.pk}/ship", SHIPMENT, format="json")
    assert response.status_code == 200, response.content

    # then the event has two jobs: the customer's notifier and the webhook fan-out
    event = Event.objects.get(type="order.shipped")
    jobs = {j.kind: j for j in Job.objects.filter(event_id=event.pk)}
    assert set(jobs) == {"event_notification", "webhook_fanout"}

    # and the fan-out makes the endpoint's delivery of the order.shipped message
    webhooks_fan_out([jobs["webhook_fanout"]])
    delivery = Delivery.objects.get(endpoint=endpoint)
    assert delivery.message.type == "order.shipped"
    assert delivery.message.data["order_number"] == "ORD-2002"
