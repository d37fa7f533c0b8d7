"""Orphan rescue: jobs left `running` by a worker that died without reporting."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from domain.jobs.hooks import hooks
from domain.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from domain.jobs.outbox import outbox_enqueue_on_commit
from domain.jobs.records import attempt_row

logger = logging.getLogger(__name__)


class WorkerLost(Exception):
    """Recorded on a job whose worker vanished while running it."""


def jobs_rescue_orphans(*, older_than: timedelta | None = None, batch_size: int = 500) -> dict:
    """Requeue jobs stuck in `running` past their hard time limit plus a grace period.

    Such a job's worker died without reporting (kill -9, OOM, lost machine). The lost attempt
    is counted; a job out of attempts goes dead instead.
    """
    if older_than is None:
        older_than = timedelta(
            seconds=settings.CELERY_TASK_TIME_LIMIT + settings.ORPHAN_GRACE_SECONDS)
    now = timezone.now()
    with transaction.atomic():
        orphans = list(
            Job.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=JobStatus.RUNNING, started_at__lt=now - older_than)
            .order_by("started_at")[:batch_size]
        )
        if not orphans:
            return {"requeued": 0, "dead": 0}
        JobAttempt.objects.bulk_create([
            attempt_row(job, AttemptOutcome.LOST, now,
                        WorkerLost(f"worker {job.worker or '?'} gave no result in {older_than}"))
            for job in orphans
        ])
        requeue = [j for j in orphans if j.attempts < j.max_attempts]
        dead = [j for j in orphans if j.attempts >= j.max_attempts]
        error = {"type": "WorkerLost", "message": "the worker vanished while running the job"}
        Job.objects.filter(pk__in=[j.pk for j in requeue], status=JobStatus.RUNNING).update(
            status=JobStatus.QUEUED, enqueued_at=None, error=error)
        Job.objects.filter(pk__in=[j.pk for j in dead], status=JobStatus.RUNNING).update(
            status=JobStatus.DEAD, finished_at=now, error=error)
        outbox_enqueue_on_commit(requeue)
    event_ids = {job.event_id for job in dead if job.event_id}
    if event_ids:
        hooks().jobs_finished(event_ids=event_ids)
    logger.warning("orphans rescued requeued=%d dead=%d", len(requeue), len(dead))
    return {"requeued": len(requeue), "dead": len(dead)}
