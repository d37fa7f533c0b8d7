"""Reads for events and jobs. A key sees only what it created, unless it has the admin scope."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from domain.common.errors import NotFound
from domain.common.models import ApiKey, Scopes
from domain.events.models import Event, Job, JobAttempt


def _visible(queryset: QuerySet, api_key: ApiKey | None) -> QuerySet:
    if api_key is None or Scopes.ADMIN in api_key.scopes:
        return queryset
    return queryset.filter(api_key=api_key)


def event_get(*, event_id, api_key: ApiKey | None) -> Event:
    # Someone else's event is "not found", not "forbidden": ids must not leak.
    event = _visible(Event.objects.all(), api_key).filter(pk=event_id).first()
    if event is None:
        raise NotFound("Event not found.")
    return event


def event_jobs(*, event: Event) -> list[Job]:
    return list(event.jobs.order_by("created_at", "handler"))


def job_get(*, job_id, api_key: ApiKey | None) -> Job:
    job = _visible(Job.objects.all(), api_key).filter(pk=job_id).first()
    if job is None:
        raise NotFound("Job not found.")
    return job


def job_list(*, api_key: ApiKey | None, status: str | None = None, kind: str | None = None,
             event_id=None) -> QuerySet[Job]:
    jobs = _visible(Job.objects.all(), api_key)
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)
    if event_id:
        jobs = jobs.filter(event_id=event_id)
    return jobs


def job_attempts(*, job: Job) -> list[JobAttempt]:
    return list(job.attempt_log.order_by("number"))


def jobs_matching_replay(*, api_key: ApiKey | None, status: str, kind: str | None = None,
                         event_type: str | None = None, since: datetime | None = None,
                         until: datetime | None = None) -> QuerySet[Job]:
    """The jobs an operator's replay filter selects (time range on when they finished)."""
    jobs = job_list(api_key=api_key, status=status, kind=kind)
    if event_type:
        jobs = jobs.filter(event__type=event_type)
    if since:
        jobs = jobs.filter(finished_at__gte=since)
    if until:
        jobs = jobs.filter(finished_at__lt=until)
    return jobs
