"""A batch's attempts and deliveries are stored the same by the PostgreSQL fast path (one
statement) as by the portable ORM version it replaces."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.notifications import fastpaths
from domain.notifications.models import (
    AttemptResult,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Message,
    WebhookEndpoint,
    new_secret,
)

WHEN = datetime(2026, 11, 28, 9, 15, 30, 123456, tzinfo=UTC)


def _batch(n: int) -> tuple[list[Delivery], list[DeliveryAttempt]]:
    endpoints = [WebhookEndpoint.objects.create(url=f"http://127.0.0.1:9/hook/{i}",
                                                secret=new_secret()) for i in range(n)]
    endpoint = endpoints[0]
    message = Message.objects.create(type="demo.ping", data={"n": 1}, timestamp=WHEN)
    deliveries = [Delivery.objects.create(message=message, endpoint=endpoints[i],
                                          status=DeliveryStatus.SENDING, attempts=i % 2,
                                          last_error={"type": "X"} if i % 2 else None)
                  for i in range(n)]
    message2 = Message.objects.create(type="demo.ping", data={"n": 2}, timestamp=WHEN)
    failed = Delivery.objects.create(message=message2, endpoint=endpoint,
                                     status=DeliveryStatus.SENDING)
    attempts = [DeliveryAttempt(delivery_id=d.pk, number=d.attempts + 1, at=WHEN,
                                outcome=AttemptResult.DELIVERED, http_status=200, latency_ms=51,
                                response_excerpt="ok é", worker="w1")
                for d in deliveries]
    attempts.append(DeliveryAttempt(delivery_id=failed.pk, number=1, at=WHEN,
                                    outcome=AttemptResult.FAILED, http_status=None,
                                    latency_ms=None, error_type="ClientConnectorError",
                                    error_message="refused", worker="w1"))
    return deliveries, attempts


def _rows(deliveries: list[Delivery]) -> tuple[list[dict], list[dict]]:
    ids = [d.pk for d in deliveries]
    stored = [Delivery.objects.filter(pk=pk).values(
        "status", "attempts", "delivered_at", "last_attempt_at", "last_error",
        "next_attempt_at").get() for pk in ids]
    attempts = sorted((row for row in DeliveryAttempt.objects.filter(
        delivery_id__in=ids).values()), key=lambda r: ids.index(r["delivery_id"]))
    for row in attempts:
        assert row.pop("id") is not None
        row["delivery_id"] = ids.index(row["delivery_id"])
    return stored, attempts


@pytest.mark.postgres  # elsewhere the fast path is the portable one
@pytest.mark.django_db
def test_the_fast_path_stores_what_the_portable_path_stores(django_assert_num_queries):
    # given two equal batches of deliveries being sent, each with its attempts (one failed,
    # of another delivery)
    fast, fast_attempts = _batch(3)
    portable, portable_attempts = _batch(3)
    now = datetime(2026, 11, 28, 9, 16, tzinfo=UTC)

    # when one is recorded by the fast path and the other by the portable version
    with django_assert_num_queries(1):
        fastpaths.attempts_record(attempts=fast_attempts, delivered=[d.pk for d in fast],
                                  now=now)
    fastpaths._attempts_record_portable(portable_attempts, [d.pk for d in portable], now)

    # then the deliveries and their attempts are stored the same, column for column
    assert _rows(fast) == _rows(portable)
    stored, attempts = _rows(fast)
    assert {row["status"] for row in stored} == {DeliveryStatus.DELIVERED}
    assert [row["attempts"] for row in stored] == [1, 2, 1]
    assert all(row["delivered_at"] == now and row["last_error"] is None for row in stored)
    assert [a["response_excerpt"] for a in attempts] == ["ok é"] * 3
    assert DeliveryAttempt.objects.filter(error_message="refused").count() == 2


@pytest.mark.django_db
def test_attempts_without_a_delivered_one_are_stored_too():
    deliveries, attempts = _batch(1)
    fastpaths.attempts_record(attempts=attempts[1:], delivered=[], now=WHEN)
    assert DeliveryAttempt.objects.get().error_type == "ClientConnectorError"
    assert Delivery.objects.get(pk=deliveries[0].pk).status == DeliveryStatus.SENDING
