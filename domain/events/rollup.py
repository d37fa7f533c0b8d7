"""An event follows its jobs: `dispatched` once every job is on the broker, `completed` or
`failed` once every job is finished, open again when a finished job is replayed.

The jobs app calls these through the hooks it exposes (domain/jobs/hooks.py); EventsConfig.ready
installs them. That is the only way a change to jobs reaches events, and the only place that
answers the jobs' one question about events (which jobs came from events of a type).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from functools import cached_property

from django.db.models import Case, Exists, OuterRef, QuerySet, Value, When
from django.utils import timezone

from domain.events import fastpaths
from domain.events.models import Event, EventStatus
from domain.jobs.hooks import JobHooks
from domain.jobs.models import TERMINAL_JOB_STATUSES, Job, JobStatus

_CLOSED = (EventStatus.COMPLETED, EventStatus.FAILED)


def events_refresh_status(*, event_ids: Collection) -> None:
    """Close events once every job is terminal: `failed` if any is dead, else `completed`.

    One conditional UPDATE run after the jobs' own commit, so of two jobs finishing at once
    the later statement sees both and closes the event.
    """
    open_jobs = Job.objects.filter(event_id=OuterRef("pk")).exclude(
        status__in=TERMINAL_JOB_STATUSES)
    dead_jobs = Job.objects.filter(event_id=OuterRef("pk"), status=JobStatus.DEAD)
    Event.objects.filter(pk__in=event_ids).exclude(status__in=_CLOSED).exclude(
        Exists(open_jobs)).update(
        status=Case(When(Exists(dead_jobs), then=Value(EventStatus.FAILED)),
                    default=Value(EventStatus.COMPLETED)),
        completed_at=timezone.now(),
    )


def events_reopen(*, event_ids: Collection) -> None:
    """A finished job of these events runs again: they are `dispatched` until it finishes."""
    Event.objects.filter(pk__in=event_ids, status__in=_CLOSED).update(
        status=EventStatus.DISPATCHED, completed_at=None)


def _show_dispatched(sent: list[Job], given: list[Job], now: datetime) -> None:
    """Keep the publisher's Event objects true to the rows, so a 202 shows what was done: an
    event is dispatched unless one of its jobs was not sent."""
    sent_ids = {job.pk for job in sent}
    held_back = {job.event_id for job in given if job.pk not in sent_ids}
    for job in sent:
        event = job.event if Job.event.is_cached(job) else None
        if event is not None and event.pk not in held_back and event.status == EventStatus.PENDING:
            event.status = EventStatus.DISPATCHED
            event.dispatched_at = now


class EventRollup(JobHooks):
    """The events' side of domain/jobs/hooks.py."""

    @cached_property
    def sent_sql(self) -> str:  # type: ignore[override]
        return fastpaths.dispatched_after_stamp_sql()

    @cached_property
    def succeeded_sql(self) -> str:  # type: ignore[override]
        return fastpaths.completed_after_success_sql()

    def jobs_sent(self, *, sent: list[Job], given: list[Job], now: datetime,
                  in_statement: bool, objects: bool = True) -> None:
        event_ids = {job.event_id for job in sent if job.event_id}
        if event_ids and not in_statement:
            fastpaths.mark_dispatched(event_ids, now)
        if objects:
            _show_dispatched(sent, given, now)

    def jobs_finished(self, *, event_ids: Collection) -> None:
        events_refresh_status(event_ids=event_ids)

    def jobs_reopened(self, *, event_ids: Collection) -> None:
        events_reopen(event_ids=event_ids)

    def jobs_of_event_type(self, jobs: QuerySet[Job], event_type: str) -> QuerySet[Job]:
        return jobs.filter(event__type=event_type)
