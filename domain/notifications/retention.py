"""Retention of delivery records: deliveries and their attempts, webhook messages,
notifications, closed digests, and read inbox items.

Only what is settled and old goes, in this order (each step's guard reads what the one
before left):

1. **Deliveries** `delivered`, `failed` or `skipped`, made and last tried before the cutoff,
   whose job is not still live, with their attempts. A delivery `pending`, `sending`,
   `retrying` or `parked` (waiting for its endpoint to be enabled, or its circuit to close)
   is live and stays, whatever its age. An inbox item or digest that pointed at a pruned
   delivery keeps its row, the reference set to NULL (their SET_NULL foreign keys).
2. **Messages** made before the cutoff with no delivery left.
3. **Notifications** made before the cutoff with no delivery left.
4. **Digests** closed before the cutoff with no delivery left (members or carrier).

Why the event need not be gone first: a message or notification made by an event's job is
unique per event (and notifier), so a job run twice makes nothing twice; but a job can only
run again while it is live or replayable (dead, cancelled), and such a job made nothing it
could make again (fan-out and sending commit all their rows together, or none).

Inbox items are the recipients' own and have their own retention (RETENTION_INBOX_DAYS):
read or archived ones made before it are pruned; an unread item never is (the unread
counter counts it).
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Exists, OuterRef, Q

from domain.common.pruning import Child, PruneReport, prune_table
from domain.jobs.models import TERMINAL_JOB_STATUSES, Job
from domain.notifications.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    Digest,
    DigestState,
    InboxItem,
    InboxState,
    Message,
    Notification,
)

SETTLED_DELIVERY_STATUSES = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED,
                             DeliveryStatus.SKIPPED)


def prunable_deliveries(*, cutoff: datetime) -> Q:
    live_job = Job.objects.filter(pk=OuterRef("job_id")).exclude(status__in=TERMINAL_JOB_STATUSES)
    return (Q(status__in=SETTLED_DELIVERY_STATUSES, created_at__lt=cutoff)
            & (Q(last_attempt_at__isnull=True) | Q(last_attempt_at__lt=cutoff))
            & ~Exists(live_job))


def _no_delivery(field: str) -> tuple:
    return (Delivery._meta.get_field(field),)


def deliveries_prune(*, cutoff: datetime, deadline: float | None = None) -> PruneReport:
    """Step 1: settled deliveries with their attempts."""
    return prune_table(model=Delivery, where=prunable_deliveries(cutoff=cutoff),
                       children=(Child(DeliveryAttempt, "delivery"),), deadline=deadline)


def messages_prune(*, cutoff: datetime, deadline: float | None = None) -> PruneReport:
    """Step 2: webhook messages with no delivery left."""
    return prune_table(model=Message, where=Q(created_at__lt=cutoff),
                       keep_if_referenced=_no_delivery("message"), deadline=deadline)


def notifications_prune(*, cutoff: datetime, deadline: float | None = None) -> PruneReport:
    """Step 3: notifications with no delivery left (an inbox item keeps its own copy of what
    it shows; its reference is set to NULL)."""
    return prune_table(model=Notification, where=Q(created_at__lt=cutoff),
                       keep_if_referenced=_no_delivery("notification"), deadline=deadline)


def digests_prune(*, cutoff: datetime, deadline: float | None = None) -> PruneReport:
    """Step 4: closed digests whose deliveries (members and carrier) are all gone."""
    return prune_table(model=Digest,
                       where=Q(state=DigestState.CLOSED, closes_at__lt=cutoff,
                               carrier__isnull=True),
                       keep_if_referenced=_no_delivery("digest"), deadline=deadline)


def inbox_prune(*, cutoff: datetime, deadline: float | None = None) -> PruneReport:
    """Delete inbox items read or archived and made before `cutoff`; unread ones stay."""
    return prune_table(model=InboxItem,
                       where=Q(created_at__lt=cutoff) & ~Q(state=InboxState.UNREAD),
                       deadline=deadline)
