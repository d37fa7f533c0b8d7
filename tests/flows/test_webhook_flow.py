"""Webhooks end to end on a real worker: API → event → fan-out → signed delivery → receiver."""

import pytest
from django.urls import reverse

from domain.notifications.models import Delivery, DeliveryStatus
from tests.conftest import wait_for
from tests.webhook_receiver import Receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def _delivery(status=None, **filters):
    delivery = Delivery.objects.filter(**filters).first()
    return delivery if delivery and (status is None or delivery.status == status) else None


def test_a_published_event_reaches_a_subscribed_endpoint_signed(celery_worker_thread,
                                                                 client_all):
    with Receiver() as receiver:
        # given an endpoint subscribed to demo.ping
        created = client_all.post(reverse("webhook-endpoint-list"), {
            "url": receiver.url(), "event_types": ["demo.ping"]}, format="json")
        assert created.status_code == 201, created.content
        endpoint = created.json()
        assert endpoint["secret"].startswith("whsec_")
        receiver.trust(endpoint["secret"])

        # when an event of that type is published
        published = client_all.post(reverse("event-publish"), {
            "type": "demo.ping", "payload": {"message": "hi"}}, format="json")
        assert published.status_code == 202, published.content
        event_id = published.json()["id"]

        # then the receiver gets it once, signed with the endpoint's secret
        delivery = wait_for(lambda: _delivery(DeliveryStatus.DELIVERED,
                                              message__event_id=event_id),
                            message="the delivery")
        assert len(receiver.received) == 1
        got = receiver.received[0]
        assert got.verified_with == [endpoint["secret"]]
        assert got.json["type"] == "demo.ping" and got.json["data"] == {"message": "hi"}
        assert got.message_id == delivery.message_id

        # and the API shows the delivery and its one attempt
        body = client_all.get(reverse("delivery-detail", args=[delivery.pk])).json()
        assert body["status"] == "delivered" and body["attempts"] == 1
        attempts = client_all.get(reverse("delivery-attempts", args=[delivery.pk])).json()
        assert [(a["outcome"], a["http_status"]) for a in attempts] == [("delivered", 200)]
