"""Reads for jobs. A key sees only what it created, unless it has the admin scope."""

from __future__ import annotations

import threading
import time
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Min, Q, QuerySet
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from domain.access.models import ApiKey
from domain.access.selectors import visible_to
from domain.common.errors import NotFound
from domain.jobs.hooks import hooks
from domain.jobs.models import RUNNABLE_JOB_STATUSES, Job, JobAttempt, QueuePause
from domain.jobs.routing import kinds_on_queues


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


def jobs_waiting_by_kind(*, now: datetime | None = None) -> dict[str, dict]:
    """Per job kind: the jobs due and waiting for a worker (queued, or retrying with their
    retry due), and how long the oldest has been due. One aggregate over the runnable jobs
    (`job_status_created` index)."""
    now = now or timezone.now()
    due_since = Greatest("created_at", Coalesce("run_at", "created_at"),
                         Coalesce("next_retry_at", "created_at"))
    rows = (Job.objects.filter(status__in=RUNNABLE_JOB_STATUSES)
            .filter(Q(run_at__isnull=True) | Q(run_at__lte=now))
            .filter(Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=now))
            .values("kind").annotate(waiting=Count("id"), oldest=Min(due_since))
            .order_by("kind"))
    return {row["kind"]: {"waiting": row["waiting"],
                          "oldest_age_seconds": round(max(0.0, (now - row["oldest"])
                                                          .total_seconds()), 3)}
            for row in rows}


# --- Paused queues ----------------------------------------------------------------------------

def queue_pauses() -> dict[str, QueuePause]:
    """Every paused queue's row, by queue name (read from the database each time)."""
    return {pause.queue: pause for pause in QueuePause.objects.all()}


class _PausedQueues:
    """The names of the paused queues, read at most once per QUEUE_PAUSE_CACHE_SECONDS per
    process: the worker asks before every claim (workers/base.py), and one query per message
    for a table of a few rows would be a round trip added to every job. Forgotten at once in the
    process that pauses or resumes (domain/jobs/services.py); elsewhere a change is seen within
    that time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._names: frozenset[str] = frozenset()

    def forget(self) -> None:
        with self._lock:
            self._read_at = float("-inf")

    def names(self) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            if now - self._read_at >= settings.QUEUE_PAUSE_CACHE_SECONDS:
                self._names = frozenset(QueuePause.objects.values_list("queue", flat=True))
                self._read_at = now
            return self._names


paused_queues = _PausedQueues()


def queue_is_paused(name: str) -> bool:
    """Whether the queue is paused, as of at most QUEUE_PAUSE_CACHE_SECONDS ago in this
    process (see `_PausedQueues`). A database error propagates: the caller decides."""
    return name in paused_queues.names()


def jobs_waiting_on_queue(queue: str) -> int:
    """Jobs queued or retrying (due or not) of the kinds routed to `queue`: what a pause of
    the queue holds, or a resume lets go."""
    kinds = kinds_on_queues({queue})
    if not kinds:
        return 0
    return Job.objects.filter(status__in=RUNNABLE_JOB_STATUSES, kind__in=kinds).count()
