"""The notifications' set-based statement: the PostgreSQL fast path beside the portable ORM
version it replaces, chosen by domain/common/fastpaths (tests/domain/notifications/
test_fastpaths.py holds the two to the same rows)."""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.db.models import F

from domain.common.fastpaths import insert_numbered_sql, table
from domain.notifications.models import Delivery, DeliveryAttempt, DeliveryStatus


def attempts_record(*, attempts: list[DeliveryAttempt], delivered: list, now: datetime) -> None:
    """Store a batch's attempt rows and move its `delivered` deliveries (ids) to delivered:
    one statement on PostgreSQL (it was a bulk_create and an UPDATE, and Django's building of
    the two, a placeholder and a conversion per value, was most of a batch's bookkeeping).
    The caller holds the transaction."""
    if not attempts and not delivered:
        return
    insert = insert_numbered_sql(DeliveryAttempt, attempts) if attempts else None
    if insert is None or not delivered:
        _attempts_record_portable(attempts, delivered, now)
        return
    sql, values = insert
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH attempts AS ({sql}) "  # noqa: S608 - the models' own table and field names
            f"UPDATE {table(Delivery)} SET status = %s, delivered_at = %s, "
            "last_attempt_at = %s, attempts = attempts + 1, last_error = NULL, "
            "next_attempt_at = NULL WHERE id = ANY(%s::uuid[])",
            [*values, DeliveryStatus.DELIVERED.value, now, now, [str(pk) for pk in delivered]])


def _attempts_record_portable(attempts: list[DeliveryAttempt], delivered: list,
                              now: datetime) -> None:
    DeliveryAttempt.objects.bulk_create(attempts)
    if delivered:
        Delivery.objects.filter(pk__in=delivered).update(
            status=DeliveryStatus.DELIVERED, delivered_at=now, last_attempt_at=now,
            attempts=F("attempts") + 1, last_error=None, next_attempt_at=None)
