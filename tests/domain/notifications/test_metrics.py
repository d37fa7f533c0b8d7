"""Delivery attempts counted by channel and outcome once their rows commit (a real webhook
receiver, a real SMTP server, the in-app inbox), and the endpoints' health counted when
scraped."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from domain.jobs.services import job_build
from domain.notifications import deliveries
from domain.notifications.kinds import WEBHOOK_DELIVERY
from domain.notifications.models import (
    Delivery,
    DeliveryStatus,
    EndpointState,
    Message,
    WebhookEndpoint,
    new_secret,
)
from tests.metrics_utils import TOKEN, reset_metrics, scrape, value
from tests.notification_utils import (
    deliver_emails,
    deliver_inbox,
    email_deliveries,
    inapp_deliveries,
    people,
    send,
)
from tests.webhook_receiver import Answer, Receiver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_GAUGE_CACHE_SECONDS = 0
    reset_metrics()
    yield
    reset_metrics()


def _attempts(samples, channel: str) -> dict[str, float | None]:
    return {outcome: value(samples, "conveyor_delivery_attempts_total", channel=channel,
                           outcome=outcome) for outcome in ("delivered", "failed", "gave_up")}


def _webhook_jobs(urls: list[str]):
    now = timezone.now()
    message = Message.objects.create(event_id=uuid.uuid4(), type="demo.ping", timestamp=now)
    jobs = []
    for url in urls:
        endpoint = WebhookEndpoint.objects.create(url=url, secret=new_secret())
        delivery = Delivery.objects.create(message=message, endpoint=endpoint,
                                           status=DeliveryStatus.PENDING)
        job = job_build(kind=WEBHOOK_DELIVERY.name, params={"delivery": str(delivery.pk)},
                        created_at=now)
        Delivery.objects.filter(pk=delivery.pk).update(job_id=job.pk)
        jobs.append(job)
    return jobs


def test_webhook_attempts_are_counted_by_outcome():
    # given a receiver that takes two deliveries, fails one (500: retried) and rejects one
    # for good (410)
    with Receiver() as receiver:
        receiver.script("/bad", [Answer(500)])
        receiver.script("/gone", [Answer(410)])
        jobs = _webhook_jobs([receiver.url("/ok"), receiver.url("/ok2"), receiver.url("/bad"),
                              receiver.url("/gone")])

        # when the batch is sent (the delivery job's body, in process)
        deliveries.webhooks_deliver(jobs)

    # then each attempt is counted once, by what it came to
    assert _attempts(scrape(), "webhook") == {"delivered": 2, "failed": 1, "gave_up": 1}


def test_email_and_in_app_attempts_are_counted_by_channel(smtp_sink):
    # given one notification to three people by email and in-app, one address refused (550)
    smtp_sink.script("user-2@example.com", rcpt=["550 5.1.1 No such user"])
    result = send(recipients=people(3), channels=["email", "in_app"])

    # when the email and in-app job bodies run on its deliveries
    deliver_emails(email_deliveries(result))
    deliver_inbox(inapp_deliveries(result))

    # then
    samples = scrape()
    assert _attempts(samples, "email") == {"delivered": 2, "failed": 0, "gave_up": 1}
    assert _attempts(samples, "in_app") == {"delivered": 3, "failed": 0, "gave_up": 0}


def test_endpoint_states_and_open_circuits_are_counted_when_scraped():
    now = timezone.now()
    for state, n in ((EndpointState.ACTIVE, 3), (EndpointState.DEGRADED, 2),
                     (EndpointState.DISABLED, 1)):
        for i in range(n):
            WebhookEndpoint.objects.create(url=f"https://{state}-{i}.example.com/hook",
                                           secret=new_secret(), state=state)
    WebhookEndpoint.objects.filter(state=EndpointState.DEGRADED).update(
        circuit_open_until=now + timedelta(minutes=1))

    samples = scrape()

    assert {state.value: value(samples, "conveyor_webhook_endpoints", state=state.value)
            for state in EndpointState} == {"active": 3, "degraded": 2, "disabled": 1}
    assert value(samples, "conveyor_webhook_endpoints_circuit_open") == 2
