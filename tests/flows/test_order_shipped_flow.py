"""order.shipped end to end on a real worker: POST /api/v1/orders/{id}/ship → the event →
its notifier → an email at a real SMTP server and an item in the customer's inbox, and the
signed webhook at a subscribed endpoint's real receiver."""

import pytest
from django.urls import reverse

from domain.notifications.inbox import inbox_items, inbox_unread
from domain.notifications.models import Delivery, DeliveryStatus, Notification
from tests.conftest import wait_for
from tests.factories import CustomerFactory, OrderFactory
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

SHIPMENT = {"carrier": "DHL", "tracking_number": "JD0146000062",
            "tracking_url": "https://www.dhl.com/track?id=JD0146000062"}


def _delivered(**filters):
    delivery = Delivery.objects.filter(**filters).first()
    return delivery if delivery and delivery.status == DeliveryStatus.DELIVERED else None


def test_shipping_an_order_emails_and_notifies_the_customer_and_calls_the_webhook(
        celery_worker_thread, make_client, smtp_sink):
    with Receiver() as receiver:
        # given a key that ships orders, with an endpoint subscribed to order.shipped
        client = make_client(["orders:write", "webhooks:manage"])
        created = client.post(reverse("webhook-endpoint-list"), {
            "url": receiver.url(), "event_types": ["order.shipped"]}, format="json")
        assert created.status_code == 201, created.content
        receiver.trust(created.json()["secret"])
        # and a customer's placed order
        customer = CustomerFactory(name="Ada Lovelace", email="ada@example.com")
        order = OrderFactory(number="ORD-1001", customer=customer)

        # when the order is shipped through the API
        response = client.post(reverse("order-ship", args=[order.pk]), SHIPMENT,
                               format="json")
        assert response.status_code == 200, response.content
        assert response.json()["status"] == "shipped"

        # then the email arrives at the SMTP server, with the order number in the subject,
        # the text and the HTML, and the tracking link
        [email] = wait_for(lambda: smtp_sink.messages_to("ada@example.com"),
                           message="the shipping email")
        assert email.subject == "Your order ORD-1001 has shipped"
        assert "ORD-1001" in email.text and "Tracking number: JD0146000062" in email.text
        assert "ORD-1001" in email.html
        assert 'href="https://www.dhl.com/track?id=JD0146000062"' in email.html
        notification = Notification.objects.get(template="order_shipped")
        email_delivery = wait_for(lambda: _delivered(notification=notification,
                                                     channel="email"),
                                  message="the email delivery recorded")
        assert email["Message-ID"].strip("<>").startswith(str(email_delivery.pk))

        # and the in-app item appears in the customer's inbox, unread
        recipient = str(customer.pk)
        [item] = wait_for(lambda: list(inbox_items(recipient_id=recipient)),
                          message="the inbox item")
        assert item.title == "Your order ORD-1001 has shipped"
        assert inbox_unread(recipient_id=recipient) == 1
        wait_for(lambda: _delivered(notification=notification, channel="in_app"),
                 message="the in-app delivery recorded")

        # and the subscribed endpoint's receiver gets order.shipped, signed with its secret
        wait_for(lambda: _delivered(message__type="order.shipped"), message="the webhook")
        [hook] = receiver.received
        assert hook.verified_with == [created.json()["secret"]]
        assert hook.json["type"] == "order.shipped"
        assert hook.json["data"]["order_number"] == "ORD-1001"
        assert hook.json["data"]["tracking_number"] == "JD0146000062"

        # and one email and one webhook in all: nothing was sent twice
        assert len(smtp_sink.received) == 1
        assert Notification.objects.count() == 1
