"""The job lifecycle as the worker drives it: claim, succeed, and what a failure means.

The worker runtime (workers/base.py) calls these and carries out what they decide; every
status change and every decision is made here, against the job's row.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from domain.jobs import fastpaths
from domain.jobs import metrics as job_metrics
from domain.jobs.hooks import hooks
from domain.jobs.models import AttemptOutcome, Job, JobStatus
from domain.jobs.records import attempt_row, error_summary, format_traceback
from domain.jobs.registry import get_job_kind
from domain.jobs.retry import MAX_BROKER_COUNTDOWN

logger = logging.getLogger(__name__)


def job_claim(*, job_id: str, worker: str = "") -> Job | None:
    """Move a runnable job to `running`, atomically; None if it is not runnable.

    This one conditional UPDATE is what makes every task idempotent on its job id: a second
    delivery of the same message, a cancelled job or a finished one finds nothing to claim.
    """
    claimed = jobs_claim(job_ids=[job_id], worker=worker)
    return claimed[0] if claimed else None


def jobs_claim(*, job_ids: list[str], worker: str = "") -> list[Job]:
    """Claim a micro-batch: move its runnable jobs to `running` with one conditional UPDATE and
    return them in the order given. Jobs done, cancelled, not yet due (`run_at`, or a retry's
    `next_retry_at`: an early duplicate of a message must not cut a backoff short) or claimed by
    another delivery are left out.

    The UPDATE waits for row locks rather than skipping them: the publisher's own bookkeeping
    UPDATE (enqueued_at, after the send) can still hold a fresh job's row when the message
    arrives, and skipping it would drop that job from the batch.
    """
    now = timezone.now()
    jobs = fastpaths.claim(job_ids, worker[:255], now, now + lease_duration())
    job_metrics.count_jobs_on_commit(job_metrics.CLAIMED, jobs)
    order = {str(job_id): n for n, job_id in enumerate(job_ids)}
    jobs.sort(key=lambda job: order.get(str(job.pk), 0))
    return jobs


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.JOB_LEASE_SECONDS)


def jobs_renew_leases(*, job_ids: Collection[str], worker: str) -> int:
    """Extend the leases of the jobs this worker is still running (its heartbeat,
    workers/leases.py); returns how many it still holds. A job the rescue took back (its lease
    had lapsed: the worker was taken for dead) is no longer `running` under this worker, and
    is not renewed."""
    if not job_ids:
        return 0
    return Job.objects.filter(pk__in=list(job_ids), status=JobStatus.RUNNING,
                              worker=worker[:255]).update(
        lease_expires_at=timezone.now() + lease_duration())


def jobs_release(*, jobs: list[Job]) -> list[Job]:
    """Give claimed jobs that never ran back to `queued`, as if they had not been claimed
    (a micro-batch stopped early by its soft time limit). Returns the jobs released."""
    released = [job for job in jobs if job.status == JobStatus.RUNNING]
    if released:
        Job.objects.filter(fastpaths.claimed_by(released)).update(
            status=JobStatus.QUEUED, attempts=F("attempts") - 1, started_at=None, worker="",
            enqueued_at=None)
        job_metrics.count_jobs_on_commit(job_metrics.RELEASED, released)
    return released


def jobs_defer(*, jobs: list[Job], countdown: int, via_broker: bool = True) -> list[Job]:
    """Claimed jobs that may not run now for a reason that is not their failure (their
    destination asks them to wait: a rate limit, an open circuit): back to `queued`, due in
    `countdown` seconds, the attempt not counted and no attempt row written. With
    `via_broker` the caller sends them again with that countdown; otherwise the relay sends
    them when due. Returns the jobs deferred."""
    deferred = [job for job in jobs if job.status == JobStatus.RUNNING]
    if deferred:
        now = timezone.now()
        Job.objects.filter(fastpaths.claimed_by(deferred)).update(
            status=JobStatus.QUEUED, attempts=F("attempts") - 1, started_at=None, worker="",
            lease_expires_at=None, run_at=now + timedelta(seconds=countdown),
            enqueued_at=now if via_broker and countdown <= MAX_BROKER_COUNTDOWN else None)
        for job in deferred:
            job.status = JobStatus.QUEUED
        job_metrics.count_jobs_on_commit(job_metrics.DEFERRED, deferred)
    return deferred


def job_progress(*, job_id: Any, done: int, total: int | None) -> None:
    """A long job's progress (what the API and the admin show as `progress`), written in the
    caller's transaction: a bulk run writes it with each chunk, so it moves exactly as the
    chunks commit and never runs ahead of them."""
    Job.objects.filter(pk=job_id).update(progress_done=done, progress_total=total)


def job_succeed(*, job: Job, result: Any = None) -> None:
    jobs_succeed(outcomes=[(job, result)])


def jobs_succeed(*, outcomes: list[tuple[Job, Any]]) -> None:
    """Record successes, one job or a micro-batch: the jobs' rows and their attempts (one
    statement on PostgreSQL), then their events' roll-up. Only jobs still `running` change."""
    if not outcomes:
        return
    now = timezone.now()
    closed = fastpaths.succeed(outcomes, now)
    job_metrics.count_jobs_on_commit(job_metrics.SUCCEEDED, (job for job, _ in outcomes))
    for job, _ in outcomes:
        job.status, job.finished_at = JobStatus.SUCCEEDED, now
    # Events the statement closed are done; the others (another of their jobs was open when
    # the statement began, perhaps finishing at this moment) roll up after the commit.
    _finished({job.event_id for job, _ in outcomes if job.event_id} - closed)


def _finished(event_ids: Collection) -> None:
    if event_ids:
        hooks().jobs_finished(event_ids=event_ids)


# --- Failure: the decision, and the writes that record it -----------------------------------

class FailureAction(StrEnum):
    RETRY = "retrying"  # a new message after `countdown` seconds: the worker sends it
    PARK = "parked"  # wait in the database; the outbox relay sends the job when it is due
    DEAD = "dead"  # out of attempts, or an error that retrying cannot fix


@dataclass(frozen=True)
class FailureDecision:
    action: FailureAction
    countdown: int | None = None


@dataclass(frozen=True)
class Deferred:
    """What a batch body answers for a job that must wait `countdown` seconds without it
    counting as an attempt (see `jobs_defer`)."""

    countdown: int
    reason: str = ""


def will_retry(*, job: Job, exc: BaseException) -> bool:
    """Whether `job_failed` would give the job another attempt after `exc` (a body that
    records its own outcome, a webhook delivery's, says "will retry" or "gave up" with it)."""
    return get_job_kind(job.kind).retry.is_transient(exc) and job.attempts < job.max_attempts


def job_failed(*, job: Job, exc: BaseException) -> FailureDecision:
    """A claimed job's body raised `exc`: record the attempt and decide what happens next,
    by the job kind's retry policy. The job row's max_attempts (fixed when the job was
    created) is the authority on how many attempts it gets."""
    policy = get_job_kind(job.kind).retry
    if will_retry(job=job, exc=exc):
        countdown = policy.countdown(job.attempts, exc)
        if countdown > MAX_BROKER_COUNTDOWN:
            # A long wait is kept in the database, not as a broker ETA: Redis would redeliver
            # an ETA message held past the visibility timeout (a duplicate).
            job_schedule_retry(job=job, exc=exc, countdown=countdown, via_broker=False)
            logger.warning("job failed, retry parked in the database job_id=%s countdown=%ss "
                           "error=%r", job.pk, countdown, exc)
            return FailureDecision(FailureAction.PARK, countdown)
        job_schedule_retry(job=job, exc=exc, countdown=countdown)
        logger.warning("job failed, retrying job_id=%s kind=%s attempt=%d countdown=%ss "
                       "error=%r", job.pk, job.kind, job.attempts, countdown, exc)
        return FailureDecision(FailureAction.RETRY, countdown)
    job_fail(job=job, exc=exc)
    logger.error("job dead job_id=%s kind=%s attempt=%d error=%r", job.pk, job.kind,
                 job.attempts, exc)
    return FailureDecision(FailureAction.DEAD)


def job_schedule_retry(*, job: Job, exc: BaseException, countdown: int,
                       via_broker: bool = True) -> None:
    """Record a failed attempt and put the job in `retrying` until `next_retry_at`.

    Written before the retry message is published, so the message can never arrive while
    the row still says `running` (the claim would refuse it). With `via_broker=False` no
    message is coming: the relay sends the job once `next_retry_at` has passed.
    """
    now = timezone.now()
    with transaction.atomic():
        if Job.objects.filter(fastpaths.claimed_by([job])).update(
            status=JobStatus.RETRYING, next_retry_at=now + timedelta(seconds=countdown),
            error=error_summary(exc), traceback=format_traceback(exc),
            enqueued_at=now if via_broker else None,
        ):
            attempt_row(job, AttemptOutcome.RETRY, now, exc).save(force_insert=True)
            job_metrics.count_kind_on_commit(job_metrics.RETRYING, job.kind)


def job_retry_not_sent(*, job: Job) -> None:
    """The retry message could not be published: the row says `retrying` with no message in
    flight, which is exactly what the outbox relay looks for."""
    Job.objects.filter(pk=job.pk, status=JobStatus.RETRYING).update(enqueued_at=None)


def jobs_not_sent(*, jobs: list[Job]) -> None:
    """Deferred jobs whose message could not be published: the relay sends them when due."""
    Job.objects.filter(pk__in=[j.pk for j in jobs], status=JobStatus.QUEUED).update(
        enqueued_at=None)


def job_fail(*, job: Job, exc: BaseException) -> None:
    """Out of attempts, or a permanent error: the job is dead and keeps its error."""
    now = timezone.now()
    with transaction.atomic():
        if Job.objects.filter(fastpaths.claimed_by([job])).update(
            status=JobStatus.DEAD, error=error_summary(exc), traceback=format_traceback(exc),
            finished_at=now,
        ):
            attempt_row(job, AttemptOutcome.FAILED, now, exc).save(force_insert=True)
            job_metrics.count_kind_on_commit(job_metrics.DEAD, job.kind)
    _finished({job.event_id} if job.event_id else set())
