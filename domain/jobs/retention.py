"""Retention of finished jobs, their attempts, and Celery's stored task results.

A job is pruned once it is terminal (succeeded, dead or cancelled) and finished before the
cutoff; never while queued, running or retrying, whatever its age. The jobs of one event go
together: a terminal job whose event still has a live job waits for it, because the event's
status rolls up from the jobs it has left (domain/events/rollup.py): a dead job pruned while
its sibling still ran would let the event close `completed` instead of `failed`. (The query
compares `event_id` columns only; this app never queries through the foreign key.)

Task results (django-celery-results' tables) are kept here because they are the jobs'
shadows: a job that travels alone has its id as its Celery task id, and the jobs app is the
lowest one that owns task execution records, so any app above may rely on it; the worker
runtime (workers/) writes them but the domain may not import it.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Exists, OuterRef, Q
from django_celery_results.models import GroupResult, TaskResult

from domain.common.pruning import Child, PruneReport, prune_table
from domain.jobs.models import TERMINAL_JOB_STATUSES, Job, JobAttempt


def prunable_jobs(*, cutoff: datetime) -> Q:
    """Terminal jobs finished (or, without a finish time, made) before `cutoff`, with no live
    job left in their event."""
    live_sibling = Job.objects.filter(event_id=OuterRef("event_id")).exclude(
        status__in=TERMINAL_JOB_STATUSES)
    return (Q(status__in=TERMINAL_JOB_STATUSES)
            & (Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff))
            & ~Exists(live_sibling))


def jobs_prune(*, cutoff: datetime, deadline: float | None = None) -> PruneReport:
    """Delete prunable jobs with their attempts, in batches (domain/common/pruning.py). A
    foreign key of another app to a job (a bulk run's, SET_NULL) is set to NULL."""
    return prune_table(model=Job, where=prunable_jobs(cutoff=cutoff),
                       children=(Child(JobAttempt, "job"),), deadline=deadline)


def task_results_prune(*, cutoff: datetime, deadline: float | None = None) -> PruneReport:
    """Delete Celery task results (and group results) stored before `cutoff`: what
    CELERY_RESULT_EXPIRES promises, in batches rather than Celery's one DELETE."""
    return prune_table(model=TaskResult, where=Q(date_done__lt=cutoff), deadline=deadline).add(
        prune_table(model=GroupResult, where=Q(date_done__lt=cutoff), deadline=deadline))
