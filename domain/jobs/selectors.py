"""Reads for jobs. A key sees only what it created, unless it has the admin scope."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.db.models import Count, Min, Q, QuerySet
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from domain.access.models import ApiKey
from domain.access.selectors import visible_to
from domain.common.errors import NotFound
from domain.jobs.hooks import hooks
from domain.jobs.models import RUNNABLE_JOB_STATUSES, Job, JobAttempt


def job_get(*, job_id, api_key: ApiKey | None) -> Job:
    # Someone else's job is "not found", not "forbidden": ids must not leak.
    job = visible_to(Job.objects.all(), api_key).filter(pk=job_id).first()
    if job is None:
        raise NotFound("Job not found.")
    return job


def job_list(*, api_key: ApiKey | None, status: str | None = None, kind: str | None = None,
             event_id=None) -> QuerySet[Job]:
    jobs = visible_to(Job.objects.all(), api_key)
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)
    if event_id:
        jobs = jobs.filter(event_id=event_id)
    return jobs


def event_jobs(*, event_id) -> list[Job]:
    """An event's jobs in a stable order (creation, then handler name)."""
    return list(Job.objects.filter(event_id=event_id).order_by("created_at", "handler"))


def job_attempts(*, job: Job) -> list[JobAttempt]:
    """Every attempt, run by run: a replayed job's first run comes before its second, each
    run's attempts in order (attempt numbers restart at 1 with each replay)."""
    return list(job.attempt_log.order_by("run", "number"))


def jobs_matching_replay(*, api_key: ApiKey | None, status: str, kind: str | None = None,
                         event_type: str | None = None, since: datetime | None = None,
                         until: datetime | None = None) -> QuerySet[Job]:
    """The jobs an operator's replay filter selects (time range on when they finished). Which
    jobs came from events of `event_type` is the events app's answer (domain/jobs/hooks.py)."""
    jobs = job_list(api_key=api_key, status=status, kind=kind)
    if event_type:
        jobs = hooks().jobs_of_event_type(jobs, event_type)
    if since:
        jobs = jobs.filter(finished_at__gte=since)
    if until:
        jobs = jobs.filter(finished_at__lt=until)
    return jobs


def _due(jobs: QuerySet[Job], now: datetime) -> QuerySet[Job]:
    """Runnable jobs whose time has come (no `run_at` ahead, no retry wait ahead)."""
    return (jobs.filter(status__in=RUNNABLE_JOB_STATUSES)
            .filter(Q(run_at__isnull=True) | Q(run_at__lte=now))
            .filter(Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=now)))


def jobs_waiting_by_kind(*, now: datetime | None = None,
                         kinds: Collection[str] | None = None) -> dict[str, dict]:
    """Per job kind (of `kinds`, or every kind): the jobs due and waiting for a worker (queued,
    or retrying with their retry due), and how long the oldest has been due. One aggregate
    over the runnable jobs (`job_status_created` index)."""
    now = now or timezone.now()
    due_since = Greatest("created_at", Coalesce("run_at", "created_at"),
                         Coalesce("next_retry_at", "created_at"))
    jobs = Job.objects.all() if kinds is None else Job.objects.filter(kind__in=list(kinds))
    rows = (_due(jobs, now)
            .values("kind").annotate(waiting=Count("id"), oldest=Min(due_since))
            .order_by("kind"))
    return {row["kind"]: {"waiting": row["waiting"],
                          "oldest_age_seconds": round(max(0.0, (now - row["oldest"])
                                                          .total_seconds()), 3)}
            for row in rows}


def jobs_sent_before(*, job: Job, kinds: Collection[str], now: datetime | None = None,
                     limit: int = 10_000) -> int:
    """How many due jobs of these kinds (a queue's) were handed to the broker before `job`
    and have not started: the jobs ahead of it in its queue, as far as the database knows
    (a queue is first in, first out; a worker may already hold some of them, prefetched).
    Counted up to `limit`, so a backlog of millions costs a bounded scan."""
    if job.enqueued_at is None:
        return 0
    ahead = _due(Job.objects.filter(kind__in=list(kinds), enqueued_at__lt=job.enqueued_at),
                 now or timezone.now())
    return ahead.order_by()[:limit].count()
