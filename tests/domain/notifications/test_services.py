"""Endpoint services that need no worker."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from domain.notifications.models import Delivery, DeliveryStatus, Message, WebhookEndpoint
from domain.notifications.services import endpoint_recover

pytestmark = pytest.mark.django_db


def test_recover_leaves_failed_test_pings_alone():
    # given an endpoint with a failed delivery of an event and a failed test ping
    now = timezone.now()
    endpoint = WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook", secret="whsec_x")
    event_message = Message.objects.create(event_id=uuid.uuid4(), type="demo.ping",
                                           timestamp=now)
    ping = Message.objects.create(type="webhook.test", timestamp=now)
    for message in (event_message, ping):
        Delivery.objects.create(message=message, endpoint=endpoint, status=DeliveryStatus.FAILED)

    # when the endpoint's failures of the last hour are recovered
    counted = endpoint_recover(endpoint=endpoint, since=now - timedelta(hours=1), dry_run=True)
    recovered = endpoint_recover(endpoint=endpoint, since=now - timedelta(hours=1))

    # then only the event's delivery is sent again; the ping stays failed
    assert counted == recovered == 1
    assert Delivery.objects.get(message=event_message).status == DeliveryStatus.PENDING
    assert Delivery.objects.get(message=ping).status == DeliveryStatus.FAILED
