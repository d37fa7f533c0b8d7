"""The in-app inbox: writing in-app deliveries into it, and the recipient's reads.

Writing a batch of in-app deliveries is a few statements whatever its size: the items, the
unread counters (one upsert), the attempts and the deliveries' status. An item is unique on
its delivery, so a job run twice writes it once.

Every answer about an inbox carries the unread count. It is a counter row per recipient,
changed in the same transaction as every change of state (never counted: an inbox may hold
100,000 items), and each change is a conditional UPDATE of the item that says how the count
moves, so concurrent reads, read-alls and new items keep it exact.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from domain.common.errors import NotFound, PermanentError, ValidationFailed
from domain.common.fastpaths import table
from domain.jobs.models import Job
from domain.notifications import fastpaths, preferences
from domain.notifications.catalogue import MissingVariable, UnknownTemplate, get_template
from domain.notifications.models import (
    AttemptResult,
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    InboxCounter,
    InboxItem,
    InboxState,
)

WORKER = socket.gethostname()


# --- Writing ---------------------------------------------------------------------------------

def inbox_deliver(jobs: list[Job]) -> list[Any]:
    """Render the jobs' in-app deliveries into their recipients' inboxes."""
    started = timezone.now()
    start = time.perf_counter()
    answers: list[Any] = [None] * len(jobs)
    wanted = {job.pk: str(job.params.get("delivery", "")) for job in jobs}
    found = {str(d.pk): d for d in Delivery.objects.select_related("notification")
             .filter(pk__in=[w for w in wanted.values() if w])}
    candidates: list[tuple[int, Delivery]] = []
    for index, job in enumerate(jobs):
        delivery = found.get(wanted[job.pk])
        if delivery is None:
            answers[index] = {"skipped": "the delivery no longer exists"}
        elif delivery.job_id != job.pk:
            answers[index] = {"skipped": f"superseded: job {delivery.job_id} carries it now"}
        elif delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.SKIPPED):
            answers[index] = {"delivery": delivery.status, "written": False}
        else:
            candidates.append((index, delivery))
    refused = preferences.opted_out(
        (d.recipient_id, d.notification.category, Channel.IN_APP) for _, d in candidates)
    items: list[InboxItem] = []
    written: list[tuple[int, Delivery]] = []
    skipped: dict[str, list[Any]] = {}
    failed: list[tuple[Delivery, Exception]] = []
    now = timezone.now()
    for index, delivery in candidates:
        notification = delivery.notification
        if (delivery.recipient_id, notification.category, Channel.IN_APP) in refused:
            reason = preferences.opted_out_reason(notification.category, "in_app")
            skipped.setdefault(reason, []).append(delivery.pk)
            answers[index] = {"delivery": DeliveryStatus.SKIPPED, "reason": reason}
            continue
        try:
            rendered = get_template(notification.template).render(
                notification.context, recipient={"id": delivery.recipient_id, "email": ""},
                extra={"unsubscribe_url": ""})
        except (MissingVariable, UnknownTemplate) as exc:
            answers[index] = PermanentError(str(exc))
            failed.append((delivery, answers[index]))
            continue
        items.append(InboxItem(recipient_id=delivery.recipient_id, delivery_id=delivery.pk,
                               notification_id=notification.pk, template=notification.template,
                               category=notification.category, title=rendered.subject,
                               body=rendered.text, data=notification.context,
                               created_at=notification.created_at))
        written.append((index, delivery))
    latency = round((time.perf_counter() - start) * 1000)
    with transaction.atomic():
        for reason, ids in skipped.items():
            Delivery.objects.filter(pk__in=ids).update(status=DeliveryStatus.SKIPPED,
                                                       reason=reason, next_attempt_at=None)
        for delivery, error in failed:
            DeliveryAttempt.objects.create(
                delivery_id=delivery.pk, number=delivery.attempts + 1, at=started,
                outcome=AttemptResult.GAVE_UP, error_type=type(error).__name__,
                error_message=str(error), worker=WORKER)
            Delivery.objects.filter(pk=delivery.pk).update(
                status=DeliveryStatus.FAILED, last_attempt_at=now, attempts=F("attempts") + 1,
                last_error={"type": type(error).__name__, "message": str(error)})
        if items:
            InboxItem.objects.bulk_create(items)
            _count(_unread_by_recipient(items))
            fastpaths.attempts_record(
                attempts=[DeliveryAttempt(delivery_id=d.pk, number=d.attempts + 1, at=started,
                                          outcome=AttemptResult.DELIVERED, latency_ms=latency,
                                          worker=WORKER) for _, d in written],
                delivered=[d.pk for _, d in written], now=now)
    for (index, _), item in zip(written, items, strict=True):
        answers[index] = {"delivery": DeliveryStatus.DELIVERED, "inbox_item": str(item.pk)}
    return answers


def _unread_by_recipient(items: list[InboxItem]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.recipient_id] = counts.get(item.recipient_id, 0) + 1
    return counts


def _count(deltas: dict[str, int]) -> None:
    """Add to recipients' unread counters, creating them: one upsert (PostgreSQL and SQLite
    share the syntax), in recipient order, so two batches never wait on each other's rows in
    opposite orders."""
    deltas = {r: d for r, d in deltas.items() if d}
    if not deltas:
        return
    name = table(InboxCounter)
    rows = sorted(deltas.items())
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {name} (recipient_id, unread) VALUES "  # noqa: S608 - model names
            + ", ".join(["(%s, %s)"] * len(rows))
            + f" ON CONFLICT (recipient_id) DO UPDATE SET unread = {name}.unread + "
            "excluded.unread",
            [value for row in rows for value in row])


# --- Reading and changing states -------------------------------------------------------------

def inbox_unread(*, recipient_id: str) -> int:
    counter = InboxCounter.objects.filter(recipient_id=recipient_id).values_list(
        "unread", flat=True).first()
    return max(counter or 0, 0)


def inbox_items(*, recipient_id: str, state: str | None = None) -> QuerySet[InboxItem]:
    """The page's rows come from one index range scan: (recipient_id, state, created_at, id)
    with a state, (recipient_id, created_at, id) without (README "Inbox" shows the plans).
    Without a state: unread and read items, not archived ones."""
    items = InboxItem.objects.filter(recipient_id=recipient_id)
    if state:
        return items.filter(state=state)
    return items.exclude(state=InboxState.ARCHIVED)


_MOVES = {
    # action: (new state, the states it moves from, the timestamp it sets)
    "read": (InboxState.READ, (InboxState.UNREAD,), "read_at"),
    "unread": (InboxState.UNREAD, (InboxState.READ, InboxState.ARCHIVED), None),
    "archive": (InboxState.ARCHIVED, (InboxState.UNREAD, InboxState.READ), "archived_at"),
}


def inbox_item_mark(*, recipient_id: str, item_id, action: str) -> InboxItem:
    """Move one item (read, unread, archive); the same move twice changes nothing."""
    if action not in _MOVES:
        raise ValidationFailed(f"Unknown action {action!r}.", code="invalid_action")
    new_state, from_states, stamp = _MOVES[action]
    now = timezone.now()
    with transaction.atomic():
        item = InboxItem.objects.select_for_update().filter(
            pk=item_id, recipient_id=recipient_id).first()
        if item is None:
            raise NotFound("Inbox item not found.")
        if item.state in from_states:
            delta = ((new_state == InboxState.UNREAD) - (item.state == InboxState.UNREAD))
            item.state = new_state
            fields = ["state"]
            if stamp:
                setattr(item, stamp, now)
                fields.append(stamp)
            if new_state == InboxState.UNREAD:
                item.archived_at = None
                fields.append("archived_at")
            item.save(update_fields=fields)
            _count({recipient_id: delta})
    return item


def inbox_read_all(*, recipient_id: str) -> int:
    """Mark every unread item read: one UPDATE, and the counter moves by what it changed."""
    with transaction.atomic():
        changed = InboxItem.objects.filter(recipient_id=recipient_id,
                                           state=InboxState.UNREAD).update(
            state=InboxState.READ, read_at=timezone.now())
        if changed:
            InboxCounter.objects.filter(recipient_id=recipient_id).update(
                unread=F("unread") - changed)
    return changed
