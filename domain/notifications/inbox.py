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
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from domain.common.errors import NotFound, PermanentError, ValidationFailed
from domain.common.fastpaths import insert_rows, table
from domain.jobs.models import Job
from domain.notifications import fastpaths, preferences
from domain.notifications.catalogue import MissingVariable, UnknownTemplate, get_template
from domain.notifications.metrics import count_attempts_on_commit
from domain.notifications.models import (
    AttemptResult,
    Channel,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    InboxCounter,
    InboxItem,
    InboxState,
    Notification,
)

WORKER = socket.gethostname()


# --- Writing ---------------------------------------------------------------------------------

def inbox_deliver(jobs: list[Job]) -> list[Any]:
    """Render the jobs' in-app deliveries (a chunk per job) into their recipients' inboxes:
    the items, the unread counters, the attempts and the deliveries' status in one
    transaction. Each job answers its chunk's counts."""
    started = timezone.now()
    start = time.perf_counter()
    wanted = {job.pk: [str(d) for d in job.params.get("deliveries", [])] for job in jobs}
    found = _load([d for ids in wanted.values() for d in ids])
    tallies = [{"delivered": 0, "skipped": 0, "failed": 0, "not_written": 0} for _ in jobs]
    candidates: list[tuple[int, _Delivery]] = []
    for index, job in enumerate(jobs):
        for delivery_id in wanted[job.pk]:
            delivery = found.get(delivery_id)
            if (delivery is None or delivery.job_id != job.pk
                    or delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.SKIPPED,
                                           DeliveryStatus.FAILED)):
                # Gone, carried by a newer job, or settled already (the job run twice: after
                # a worker died between this write and the job's record): not again.
                tallies[index]["not_written"] += 1
            else:
                candidates.append((index, delivery))
    refused = preferences.opted_out(
        (d.recipient_id, d.notification.category, Channel.IN_APP) for _, d in candidates)
    items: list[InboxItem] = []
    written: list[_Delivery] = []
    skipped: dict[str, list[Any]] = {}
    failed: list[tuple[_Delivery, Exception]] = []
    rendered_for: dict[tuple, Any] = {}
    for index, delivery in candidates:
        notification = delivery.notification
        if (delivery.recipient_id, notification.category, Channel.IN_APP) in refused:
            reason = preferences.opted_out_reason(notification.category, "in_app")
            skipped.setdefault(reason, []).append(delivery.pk)
            tallies[index]["skipped"] += 1
            continue
        try:
            rendered = _render(notification, delivery.recipient_id, rendered_for)
        except (MissingVariable, UnknownTemplate) as exc:
            failed.append((delivery, PermanentError(str(exc))))
            tallies[index]["failed"] += 1
            continue
        items.append(InboxItem(id=uuid.uuid4(), recipient_id=delivery.recipient_id,
                               delivery_id=delivery.pk, notification_id=notification.pk,
                               template=notification.template, category=notification.category,
                               title=rendered.subject, body=rendered.text,
                               data=notification.context, state=InboxState.UNREAD,
                               created_at=notification.created_at, read_at=None,
                               archived_at=None))
        written.append(delivery)
        tallies[index]["delivered"] += 1
    latency = round((time.perf_counter() - start) * 1000)
    now = timezone.now()
    attempts: list[DeliveryAttempt] = []
    with transaction.atomic():
        for reason, ids in skipped.items():
            Delivery.objects.filter(pk__in=ids).update(status=DeliveryStatus.SKIPPED,
                                                       reason=reason, next_attempt_at=None)
        for delivery, error in failed:
            attempts.append(DeliveryAttempt.objects.create(
                delivery_id=delivery.pk, number=delivery.attempts + 1, at=started,
                outcome=AttemptResult.GAVE_UP, error_type=type(error).__name__,
                error_message=str(error), worker=WORKER))
            Delivery.objects.filter(pk=delivery.pk).update(
                status=DeliveryStatus.FAILED, last_attempt_at=now, attempts=F("attempts") + 1,
                last_error={"type": type(error).__name__, "message": str(error)})
        if items:
            insert_rows(InboxItem, items)
            _count(_unread_by_recipient(items))
            delivered = [DeliveryAttempt(delivery_id=d.pk, number=d.attempts + 1, at=started,
                                         outcome=AttemptResult.DELIVERED, latency_ms=latency,
                                         worker=WORKER) for d in written]
            fastpaths.attempts_record(attempts=delivered, delivered=[d.pk for d in written],
                                      now=now)
            attempts.extend(delivered)
        count_attempts_on_commit(Channel.IN_APP, attempts)
    return tallies


@dataclass(slots=True)
class _Delivery:
    pk: Any
    job_id: Any
    status: str
    recipient_id: str
    attempts: int
    notification: Notification


def _load(ids: list[str]) -> dict[str, _Delivery]:
    """The deliveries as plain rows, their notifications loaded once each: a 1,000-recipient
    send's chunk would otherwise build a model and parse the same context per delivery (40%
    of writing a chunk, measured)."""
    rows = list(Delivery.objects.filter(pk__in=ids).values_list(
        "id", "job_id", "status", "recipient_id", "attempts", "notification_id"))
    notifications = {n.pk: n for n in Notification.objects.filter(
        pk__in={row[5] for row in rows})}
    return {str(row[0]): _Delivery(*row[:5], notification=notifications[row[5]])
            for row in rows if row[5] in notifications}


def _render(notification, recipient_id: str, cache: dict[Any, Any]):
    """A template whose parts do not name the recipient (`NotificationTemplate.personal`)
    renders the same for all of them: once per notification, not once per recipient (a
    1,000-recipient send renders once, not 1,000 times)."""
    template = get_template(notification.template)
    if not template.personal and notification.pk in cache:
        return cache[notification.pk]
    rendered = template.render(notification.context, recipient={"id": recipient_id,
                                                                "email": ""},
                               extra={"unsubscribe_url": ""})
    if not template.personal:
        cache[notification.pk] = rendered
    return rendered


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
