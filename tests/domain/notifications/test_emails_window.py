"""The window between the SMTP server accepting an email and our record of it
(domain/notifications/emails.py) is bounded by RECORD_EVERY_SECONDS, not by the batch: while
a batch of emails goes out on its connection, what was sent is recorded as it goes. Seen from
the real SMTP server of the tests: when each email's DATA arrives, the emails before it in
the batch are already `delivered` in the database."""

from __future__ import annotations

import time

import psycopg2
import pytest

from domain.jobs.models import Job
from domain.notifications import emails
from domain.notifications.models import (
    AttemptResult,
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
)
from domain.notifications.sending import notification_send, notification_validate
from tests.faults.procs import database_url

# The server's thread reads committed rows, on a connection of its own (psycopg2: Django's ORM
# refuses to run in the server's asyncio loop).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

SEND_SECONDS = 0.1  # each email, as the server holds it before answering


def _send(n: int) -> list[Delivery]:
    draft = notification_validate(
        template="security_alert", channels=[Channel.EMAIL],
        context={"title": "New sign-in", "message": "Someone signed in.",
                 "occurred_at": "2026-11-28T09:00:00Z"},
        recipients=[{"id": f"r{i}", "email": f"r{i}@example.com"} for i in range(n)])
    return notification_send(draft=draft).deliveries


def test_each_email_is_recorded_while_the_rest_of_its_batch_is_sent(smtp_sink, monkeypatch):
    # given 5 email deliveries in one batch, a server that takes 0.1 s to accept each, and a
    # record interval shorter than that: each email is recorded before the next one goes
    monkeypatch.setattr(emails, "RECORD_EVERY_SECONDS", SEND_SECONDS / 2)
    deliveries = _send(5)
    delivered_before: dict[str, int] = {}
    reader = psycopg2.connect(database_url())
    reader.autocommit = True

    def on_data(received) -> None:
        # in the server's thread, before it answers 250: what the database says already
        with reader.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {Delivery._meta.db_table} "  # noqa: S608 - the model's own table
                        "WHERE id = ANY(%s::uuid[]) AND status = %s",
                        [[str(d.pk) for d in deliveries], DeliveryStatus.DELIVERED.value])
            delivered_before[received.rcpt_to[0]] = cur.fetchone()[0]
        time.sleep(SEND_SECONDS)

    for delivery in deliveries:
        smtp_sink.script(delivery.address, on_data=on_data)
    jobs = list(Job.objects.filter(pk__in=[d.job_id for d in deliveries]))
    jobs.sort(key=lambda job: [d.job_id for d in deliveries].index(job.pk))

    # when the batch is sent
    try:
        answers = emails.emails_deliver(jobs)
    finally:
        reader.close()

    # then, as each email reached the server, every email before it was recorded delivered
    order = [m.rcpt_to[0] for m in smtp_sink.received]
    assert order == [d.address for d in deliveries]
    assert [delivered_before[address] for address in order] == [0, 1, 2, 3, 4]
    # and all five are delivered, with one attempt each
    assert [a["delivery"] for a in answers] == [DeliveryStatus.DELIVERED] * 5
    assert Delivery.objects.filter(pk__in=[d.pk for d in deliveries],
                                   status=DeliveryStatus.DELIVERED, attempts=1).count() == 5
    assert DeliveryAttempt.objects.filter(delivery__in=deliveries,
                                          outcome=AttemptResult.DELIVERED).count() == 5


def test_records_come_no_more_often_than_the_interval(smtp_sink):
    # given 20 deliveries to a server that answers at once
    deliveries = _send(20)
    jobs = list(Job.objects.filter(pk__in=[d.job_id for d in deliveries]))

    # when the batch is sent
    start = time.monotonic()
    answers = emails.emails_deliver(jobs)
    took = time.monotonic() - start

    # then all are delivered, by at most one record per interval that passed, plus the last
    # (a quick batch is one statement, as before the interval existed)
    assert [a["delivery"] for a in answers] == [DeliveryStatus.DELIVERED] * 20
    assert len(smtp_sink.received) == 20
    records = Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).values_list(
        "delivered_at", flat=True).distinct().count()
    assert 1 <= records <= int(took / emails.RECORD_EVERY_SECONDS) + 1
