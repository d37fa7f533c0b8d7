"""Orphan rescue: jobs left `running` by a worker that died without reporting.

A running job holds a lease its worker renews every third of JOB_LEASE_SECONDS
(workers/leases.py). A lease lapsed for longer than ORPHAN_GRACE_SECONDS means the worker is
gone (kill -9, OOM, a cold shutdown, a lost machine): the job runs again, with a `lost`
attempt counted. With the defaults (10 s lease, 5 s grace, Beat every 5 s) an orphan runs
again within about 20 s, and a slow job whose worker is alive keeps renewing and is never
taken from it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from domain.common.redis import redis_client, redis_key
from domain.jobs import metrics as job_metrics
from domain.jobs.hooks import hooks
from domain.jobs.models import AttemptOutcome, Job, JobAttempt, JobStatus
from domain.jobs.outbox import outbox_enqueue_on_commit
from domain.jobs.records import attempt_row

logger = logging.getLogger(__name__)


class WorkerLost(Exception):
    """Recorded on a job whose worker vanished while running it."""


_LAST_RUN = ("rescue", "last_run")


def _rescue_was_watching(now: datetime) -> bool:
    """Whether the rescue completed a run within the last lease period.

    Leases lapse for live workers too while the database is down (their renewals fail), and
    the rescue cannot complete a run then either. Its first run after such a gap (or its
    first run at all) leaves lapsed leases alone: by its next run every live worker has
    renewed its leases, and only the dead ones' are still lapsed. Without Redis, the answer
    is "yes": the rescue then judges by the leases alone.
    """
    try:
        previous = redis_client().get(redis_key(*_LAST_RUN))
    except redis.exceptions.RedisError as exc:
        logger.warning("orphan rescue: cannot read its last run from Redis error=%r", exc)
        return True
    return (previous is not None
            and now.timestamp() - float(previous) <= settings.JOB_LEASE_SECONDS)


def _note_run(now: datetime) -> None:
    """A run completed (its database work committed): the next one may judge leases."""
    try:
        redis_client().set(redis_key(*_LAST_RUN), now.timestamp(), ex=86_400)
    except redis.exceptions.RedisError as exc:
        logger.warning("orphan rescue: cannot note its run in Redis error=%r", exc)


def _orphans(now: datetime, older_than: timedelta | None, judge_now: bool) -> Q:
    if older_than is not None:  # an operator's or a test's explicit threshold
        return Q(started_at__lt=now - older_than)
    grace = timedelta(seconds=settings.ORPHAN_GRACE_SECONDS)
    lapsed = Q(lease_expires_at__lt=now - grace)
    # Claimed before leases existed (a deploy in progress): the old rule, hard time limit
    # plus grace since it started.
    unleased = Q(lease_expires_at__isnull=True,
                 started_at__lt=now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT) - grace)
    if not judge_now and not _rescue_was_watching(now):
        logger.info("orphan rescue: first run after a gap, lapsed leases judged next run")
        return unleased
    return lapsed | unleased


def jobs_rescue_orphans(*, older_than: timedelta | None = None, batch_size: int = 500,
                        judge_now: bool = False) -> dict:
    """Requeue running jobs whose worker is gone (see the module docstring); a job out of
    attempts goes dead instead. `older_than` overrides the leases: every job started longer
    ago than that is taken. `judge_now`: judge lapsed leases even on a first run (an operator
    asking by hand, who knows the workers have had time to renew)."""
    now = timezone.now()
    with transaction.atomic():
        orphans = list(
            Job.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=JobStatus.RUNNING)
            .filter(_orphans(now, older_than, judge_now))
            .order_by("started_at")[:batch_size]
        )
        if not orphans:
            _note_run(now)
            return {"requeued": 0, "dead": 0}
        JobAttempt.objects.bulk_create([
            attempt_row(job, AttemptOutcome.LOST, now, WorkerLost(
                f"worker {job.worker or '?'} stopped renewing its lease "
                f"(expired {job.lease_expires_at.isoformat() if job.lease_expires_at else '-'})"))
            for job in orphans
        ])
        requeue = [j for j in orphans if j.attempts < j.max_attempts]
        dead = [j for j in orphans if j.attempts >= j.max_attempts]
        error = {"type": "WorkerLost", "message": "the worker vanished while running the job"}
        Job.objects.filter(pk__in=[j.pk for j in requeue], status=JobStatus.RUNNING).update(
            status=JobStatus.QUEUED, enqueued_at=None, lease_expires_at=None, error=error)
        Job.objects.filter(pk__in=[j.pk for j in dead], status=JobStatus.RUNNING).update(
            status=JobStatus.DEAD, finished_at=now, lease_expires_at=None, error=error)
        outbox_enqueue_on_commit(requeue, count_as=job_metrics.RESCUED)
        transaction.on_commit(partial(job_metrics.count_rescue, requeue, dead))
    _note_run(now)
    event_ids = {job.event_id for job in dead if job.event_id}
    if event_ids:
        hooks().jobs_finished(event_ids=event_ids)
    logger.warning("orphans rescued requeued=%d dead=%d", len(requeue), len(dead))
    return {"requeued": len(requeue), "dead": len(dead)}
