"""The events' set-based statement: the PostgreSQL fast path beside the portable ORM version
it replaces. The vendor check is made where the statement runs (domain/jobs/fastpaths.py,
stamp_sent, through domain/common/fastpaths.on_postgresql)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.db.models import Exists, OuterRef

from domain.common.fastpaths import table
from domain.events.models import Event, EventStatus
from domain.jobs.models import TERMINAL_JOB_STATUSES, Job, JobStatus


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


def completed_after_success_sql() -> str:
    """PostgreSQL: close the events of the jobs just recorded as succeeded (`done`), in the
    same statement, when none of their other jobs is open: `failed` if one is dead, else
    `completed`; RETURNING the events closed. The statement sees the rows as they were, so a
    job of the same event finishing in another transaction at this moment still counts as
    open: then neither closes the event here and the roll-up after the commit does
    (rollup.events_refresh_status, for the events not returned). Event rows are taken in id
    order and a locked one is skipped (that roll-up runs for it too), so no two of these
    statements wait for each other."""
    closed = ", ".join(f"'{s.value}'" for s in (EventStatus.COMPLETED, EventStatus.FAILED))
    terminal = ", ".join(f"'{s}'" for s in TERMINAL_JOB_STATUSES)
    dead, completed, failed = (JobStatus.DEAD.value, EventStatus.COMPLETED.value,
                               EventStatus.FAILED.value)
    events, jobs = table(Event), table(Job)
    return (
        f", finished_events AS (SELECT l.id FROM {events} AS l "  # noqa: S608 - table names and status values from the code
        f"WHERE l.id IN (SELECT event_id FROM done) AND l.status NOT IN ({closed}) "
        f"AND NOT EXISTS (SELECT 1 FROM {jobs} AS o WHERE o.event_id = l.id "
        f"AND o.status NOT IN ({terminal}) AND o.id NOT IN (SELECT id FROM done)) "
        "ORDER BY l.id FOR UPDATE SKIP LOCKED) "
        f"UPDATE {events} AS e SET status = CASE WHEN EXISTS (SELECT 1 FROM {jobs} AS d "
        f"WHERE d.event_id = e.id AND d.status = '{dead}') THEN '{failed}' "
        f"ELSE '{completed}' END, completed_at = %(now)s FROM finished_events "
        "WHERE e.id = finished_events.id RETURNING e.id"
    )


def mark_dispatched(event_ids: Collection, now: datetime) -> None:
    """Portable (SQLite, local only): the same, as a statement of its own after the stamp."""
    unsent = Job.objects.filter(event_id=OuterRef("pk"), enqueued_at__isnull=True)
    Event.objects.filter(pk__in=event_ids, status=EventStatus.PENDING).exclude(
        Exists(unsent)).update(status=EventStatus.DISPATCHED, dispatched_at=now)
