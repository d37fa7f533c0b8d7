"""A batch's deliveries are each recorded once, whether their answer came within the batch's
wait or later: an answer that arrives while the others are being recorded goes to the late
recording, it does not fall between the two."""

from __future__ import annotations

import uuid
from concurrent import futures

import pytest
from django.utils import timezone

from domain.jobs.services import job_build
from domain.notifications import deliveries
from domain.notifications.kinds import WEBHOOK_DELIVERY
from domain.notifications.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Message,
    WebhookEndpoint,
    new_secret,
)
from domain.notifications.sender import SendResult

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_answer_arriving_while_the_batch_is_recorded_is_recorded_late(monkeypatch, settings):
    # given two deliveries (with their jobs) of one message to two endpoints
    settings.WEBHOOK_BATCH_WAIT_SECONDS = 0.01
    now = timezone.now()
    message = Message.objects.create(event_id=uuid.uuid4(), type="demo.ping", timestamp=now)
    jobs, rows = [], []
    for n in range(2):
        endpoint = WebhookEndpoint.objects.create(url=f"http://127.0.0.1:9/hook/{n}",
                                                  secret=new_secret())
        delivery = Delivery.objects.create(message=message, endpoint=endpoint,
                                           status=DeliveryStatus.PENDING)
        job = job_build(kind=WEBHOOK_DELIVERY.name, params={"delivery": str(delivery.pk)},
                        created_at=now)
        delivery.job_id = job.pk
        delivery.save(update_fields=["job_id"])
        jobs.append(job)
        rows.append(delivery)

    # and sends whose first answer is in within the wait, and whose second comes in while
    # the first is being recorded
    sent = [futures.Future(), futures.Future()]

    def answer(n: int) -> None:
        sent[n].set_result(SendResult(key=rows[n].pk, started_at=now, latency_ms=5,
                                      http_status=200, excerpt="ok"))

    answer(0)
    monkeypatch.setattr(deliveries, "send_each", lambda sends: sent)
    record = deliveries._record

    def record_while_the_second_answers(*args, **kwargs):
        if not sent[1].done():
            answer(1)
        return record(*args, **kwargs)

    monkeypatch.setattr(deliveries, "_record", record_while_the_second_answers)

    # when the batch is sent
    answers = deliveries.webhooks_deliver(jobs)

    # then the first is recorded with the batch and the second by the late recording: each
    # delivered, with one attempt row
    assert answers[0]["delivery"] == DeliveryStatus.DELIVERED
    assert isinstance(answers[1], futures.Future)
    assert answers[1].result(timeout=10)["delivery"] == DeliveryStatus.DELIVERED
    for delivery in rows:
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.DELIVERED
        assert DeliveryAttempt.objects.filter(delivery=delivery).count() == 1
