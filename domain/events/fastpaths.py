"""The events' set-based statement: the PostgreSQL fast path beside the portable ORM version
it replaces. The vendor check is made where the statement runs (domain/jobs/fastpaths.py,
stamp_sent, through domain/common/fastpaths.on_postgresql)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.db.models import Exists, OuterRef

from domain.common.fastpaths import table
from domain.events.models import Event, EventStatus
from domain.jobs.models import Job


def dispatched_after_stamp_sql() -> str:
    """PostgreSQL: move to `dispatched` the pending events of the jobs just stamped, unless one
    of their jobs still waits to be handed over. It follows the jobs' stamp in one statement
    (`WITH …, stamped AS (UPDATE … RETURNING event_id)`, parameters %(now)s and %(jobs)s): one
    round trip and one commit on every publish. In a data-modifying WITH the outer statement
    sees the rows as they were, hence "not one of the jobs just stamped". An event row locked
    now (a worker rolling it up to `completed`) is skipped, as the stamp skips job rows, so
    this statement never waits on a worker's."""
    dispatched, pending = EventStatus.DISPATCHED.value, EventStatus.PENDING.value
    # Starts with a CTE of its own (the statement's WITH list goes on): the locked events are
    # joined, not tested with IN (SELECT … FOR UPDATE), for the reason given at the stamp.
    return (
        f", events_locked AS (SELECT l.id FROM {table(Event)} AS l "  # noqa: S608 - table names and status values from the code
        f"WHERE l.id IN (SELECT event_id FROM stamped) AND l.status = '{pending}' "
        "FOR UPDATE SKIP LOCKED) "
        f"UPDATE {table(Event)} AS e SET status = '{dispatched}', "
        "dispatched_at = %(now)s FROM events_locked "
        f"WHERE e.id = events_locked.id AND e.status = '{pending}' "
        f"AND NOT EXISTS (SELECT 1 FROM {table(Job)} AS j WHERE j.event_id = e.id "
        "AND j.enqueued_at IS NULL AND NOT (j.id = ANY(%(jobs)s::uuid[])))"
    )


def mark_dispatched(event_ids: Collection, now: datetime) -> None:
    """Portable (SQLite, local only): the same, as a statement of its own after the stamp."""
    unsent = Job.objects.filter(event_id=OuterRef("pk"), enqueued_at__isnull=True)
    Event.objects.filter(pk__in=event_ids, status=EventStatus.PENDING).exclude(
        Exists(unsent)).update(status=EventStatus.DISPATCHED, dispatched_at=now)
