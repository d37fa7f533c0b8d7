"""Writes that start or steer jobs: create (directly, or for a publisher), cancel, replay;
pause and resume a queue.

What the worker does to a job while it runs is in lifecycle.py; the hand-over to the broker in
outbox.py; the rescue of jobs whose worker died in rescue.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Count, F, QuerySet
from django.utils import timezone

from domain.access.audit import Actor, audit_record
from domain.access.models import ApiKey, AuditAction
from domain.common.errors import Conflict, NotFound, ValidationFailed
from domain.common.fastpaths import insert_rows
from domain.jobs import metrics as job_metrics
from domain.jobs.hooks import hooks
from domain.jobs.models import (
    REPLAYABLE_JOB_STATUSES,
    RUNNABLE_JOB_STATUSES,
    Job,
    JobStatus,
    QueuePause,
    QueueResume,
)
from domain.jobs.outbox import outbox_enqueue_on_commit
from domain.jobs.registry import get_job_kind
from domain.jobs.routing import declared_queues, queue_changed
from domain.jobs.selectors import jobs_matching_replay, jobs_waiting_on_queue, paused_queues

logger = logging.getLogger(__name__)


def job_create(
    *,
    kind: str,
    params: Any,
    api_key: ApiKey | None = None,
    run_at: datetime | None = None,
    correlation_id: str = "",
) -> Job:
    """A job triggered directly (no event): validated against its kind, stored, and handed
    to the broker after commit (or by the relay once `run_at` is due)."""
    job_kind = get_job_kind(kind, triggerable=True)
    job_kind.validate_params(params)
    job = Job(kind=job_kind.name, params=params, max_attempts=job_kind.retry.max_attempts,
              api_key=api_key, run_at=run_at, correlation_id=correlation_id)
    with transaction.atomic():
        job.save(force_insert=True)
        outbox_enqueue_on_commit([job], count_as=job_metrics.CREATED)
    return job


def job_build(*, kind: str, params: Any, created_at: datetime, handler: str = "",
              event: Any = None, api_key: ApiKey | None = None,
              correlation_id: str = "") -> Job:
    """An unsaved job of a registered kind, for a publisher that writes many at once with
    `jobs_add` (params are the publisher's, computed from a validated payload)."""
    return Job(event=event, kind=kind, handler=handler, params=params,
               max_attempts=get_job_kind(kind).retry.max_attempts, created_at=created_at,
               api_key=api_key, correlation_id=correlation_id)


def jobs_add(*, jobs: list[Job], also: Callable[[], None] | None = None) -> None:
    """Insert jobs built by `job_build` in the caller's transaction (one statement on
    PostgreSQL) and hand them to the broker after it commits (`also`: the caller's own
    after-commit work, run with it)."""
    insert_rows(Job, jobs)
    outbox_enqueue_on_commit(jobs, count_as=job_metrics.CREATED, also=also)


def jobs_inserted(*, jobs: list[Job], also: Callable[[], None] | None = None) -> None:
    """Jobs built by `job_build` that the caller inserted itself, in one statement with its
    own rows: hand them to the broker after the commit (at once if that statement was its
    own transaction)."""
    outbox_enqueue_on_commit(jobs, count_as=job_metrics.CREATED, also=also)


# --- Operators: cancel and replay -----------------------------------------------------------

def job_cancel(*, job: Job) -> Job:
    """A queued or retrying job becomes `cancelled` and never runs.

    The cancellation is a row update, so it outlives any message already on the broker and
    any worker restart: the worker's claim refuses a cancelled job.
    """
    now = timezone.now()
    cancelled = Job.objects.filter(pk=job.pk, status__in=RUNNABLE_JOB_STATUSES).update(
        status=JobStatus.CANCELLED, finished_at=now, next_retry_at=None)
    job.refresh_from_db()
    if not cancelled:
        raise Conflict(f"A {job.status} job cannot be cancelled; only queued or retrying ones.",
                       code="job_not_cancellable", details={"status": job.status})
    job_metrics.count_kind_on_commit(job_metrics.CANCELLED, job.kind)
    if job.event_id:
        hooks().jobs_finished(event_ids={job.event_id})
    return job


_REPLAY_FIELDS = {
    "status": JobStatus.QUEUED,
    "attempts": 0,
    "replays": F("replays") + 1,
    "result": None,
    "error": None,
    "traceback": "",
    "started_at": None,
    "finished_at": None,
    "next_retry_at": None,
    "enqueued_at": None,
    "run_at": None,
}


def _reopened(jobs: list[Job]) -> None:
    event_ids = {job.event_id for job in jobs if job.event_id}
    if event_ids:
        hooks().jobs_reopened(event_ids=event_ids)


def job_replay(*, job: Job) -> Job:
    """Run a dead or cancelled job again with fresh attempts; its attempt history stays."""
    with transaction.atomic():
        replayed = Job.objects.filter(pk=job.pk, status__in=REPLAYABLE_JOB_STATUSES).update(
            **_REPLAY_FIELDS)
        job.refresh_from_db()
        if not replayed:
            raise Conflict(f"A {job.status} job cannot be replayed; only dead or cancelled ones.",
                           code="job_not_replayable", details={"status": job.status})
        _reopened([job])
        outbox_enqueue_on_commit([job], count_as=job_metrics.REPLAYED)
    logger.info("job replayed job_id=%s kind=%s replays=%d", job.pk, job.kind, job.replays)
    return job


def jobs_replay(*, api_key: ApiKey | None, status: str = JobStatus.DEAD, kind: str | None = None,
                event_type: str | None = None, error_type: str | None = None,
                since: datetime | None = None, until: datetime | None = None,
                limit: int = 10_000) -> int:
    """Replay every dead (or cancelled) job matching the filter; answer how many."""
    if status not in REPLAYABLE_JOB_STATUSES:
        raise ValidationFailed("Only dead or cancelled jobs can be replayed.",
                               code="invalid_status", details={"status": status})
    jobs = jobs_matching_replay(api_key=api_key, status=status, kind=kind,
                                event_type=event_type, error_type=error_type, since=since,
                                until=until)
    count = _replay_set(jobs.values("pk"), limit)
    logger.info("jobs replayed count=%d status=%s kind=%s event_type=%s error_type=%s", count,
                status, kind, event_type, error_type)
    return count


# --- Operators: a selection at once (the admin's actions) ---------------------------------------

def jobs_replay_selected(*, ids: Collection | QuerySet, limit: int = 10_000) -> int:
    """Replay the dead or cancelled jobs among `ids`, set-wise: a few statements whatever
    their number (jobs_replay does the same for a filter). `ids` may be a queryset of ids
    (`….values("pk")`): an admin's selection across pages then stays in the database. At most
    `limit` jobs (the oldest first) per call, so one request stays bounded; answers how many."""
    count = _replay_set(ids, limit)
    logger.info("jobs replayed count=%d selected=true", count)
    return count


def _replay_set(ids: Collection | QuerySet, limit: int) -> int:
    """The replay of many: lock the replayable jobs among `ids` (skipping those another
    transaction holds), oldest first, at most `limit`; reset them in one UPDATE; reopen their
    events; hand them to the broker after commit."""
    with transaction.atomic():
        locked = list(Job.objects.filter(pk__in=ids, status__in=REPLAYABLE_JOB_STATUSES)
                      .select_for_update(skip_locked=True).order_by("created_at")
                      .values_list("pk", flat=True)[:limit])
        if not locked:
            return 0
        count = Job.objects.filter(pk__in=locked, status__in=REPLAYABLE_JOB_STATUSES).update(
            **_REPLAY_FIELDS)
        replayed = list(Job.objects.filter(pk__in=locked))
        _reopened(replayed)
        outbox_enqueue_on_commit(replayed, count_as=job_metrics.REPLAYED)
    return count


def jobs_cancel_selected(*, ids: Collection | QuerySet) -> int:
    """Cancel the queued or retrying jobs among `ids`, set-wise (as job_cancel does one): one
    UPDATE, whatever their number; a job a worker claims meanwhile is `running` by the time the
    UPDATE reads it again, and stays so. Answers how many."""
    cancellable = Job.objects.filter(pk__in=ids, status__in=RUNNABLE_JOB_STATUSES)
    # The events to roll up, read first (an UPDATE cannot answer them portably); refreshing
    # an event none of whose jobs was cancelled in the end is harmless.
    event_ids = set(cancellable.exclude(event_id=None).values_list("event_id", flat=True)
                    .order_by().distinct())
    now = timezone.now()
    count = cancellable.update(status=JobStatus.CANCELLED, finished_at=now, next_retry_at=None)
    if count:
        # Their kinds, read back by the instant the UPDATE wrote (an operator's action, rare:
        # one more query, for exact counts by kind).
        for row in (Job.objects.filter(pk__in=ids, status=JobStatus.CANCELLED, finished_at=now)
                    .values("kind").annotate(n=Count("pk")).order_by()):
            job_metrics.count_kind_on_commit(job_metrics.CANCELLED, row["kind"], row["n"])
    if count and event_ids:  # after the UPDATE's own commit, as job_cancel
        hooks().jobs_finished(event_ids=event_ids)
    logger.info("jobs cancelled count=%d selected=true", count)
    return count


# --- Operators: pause and resume a queue ------------------------------------------------------

def _declared(queue: str) -> str:
    queues = declared_queues()
    if queue not in queues:
        raise NotFound(f"No queue named {queue!r}.", details={"queue": queue, "queues": queues})
    return queue


def _queue_changed(queue: str, paused: bool) -> None:
    paused_queues.forget()
    queue_changed(queue, paused=paused)


def queue_pause(*, queue: str, actor: Actor, reason: str = "") -> QueuePause:
    """Pause a queue: its jobs stay `queued` until it is resumed (see QueuePause). Idempotent:
    pausing a paused queue keeps the first pause's time, author and reason. Each call is one
    audit entry (its count: the jobs waiting on the queue; `detail.changed`: whether this call
    paused it); the running workers are told after the commit."""
    _declared(queue)
    with transaction.atomic():
        pause, created = QueuePause.objects.get_or_create(
            queue=queue, defaults={"paused_by": actor.name[:200], "reason": reason})
        waiting = jobs_waiting_on_queue(queue)
        audit_record(actor=actor, action=AuditAction.PAUSE, target_type="queue", target=queue,
                     count=waiting, detail={"changed": created, "reason": reason,
                                            "waiting": waiting})
        paused_queues.forget()  # this process sees its own pause at once, committed or not
        transaction.on_commit(partial(_queue_changed, queue, True))
    logger.info("queue paused queue=%s by=%r changed=%s waiting=%d", queue, actor.name, created,
                waiting)
    return pause


def queue_resume(*, queue: str, actor: Actor) -> bool:
    """Resume a paused queue; whether it was paused (resuming a running queue changes nothing,
    and is still one audit entry). Its jobs already on the broker are consumed again; those
    the relay held are sent by its next run.

    The resume's time is kept (`QueueResume`): the relay counts the hand-over of the jobs
    sent before or during the pause from it, so it does not send them a second time (one
    row, whatever the backlog)."""
    if not QueuePause.objects.filter(queue=queue).exists():  # a queue no longer declared
        _declared(queue)  # can still be resumed, an unknown one is 404
    now = timezone.now()
    with transaction.atomic():
        deleted, _ = QueuePause.objects.filter(queue=queue).delete()
        if deleted:
            QueueResume.objects.update_or_create(queue=queue, defaults={"resumed_at": now})
        waiting = jobs_waiting_on_queue(queue)
        audit_record(actor=actor, action=AuditAction.RESUME, target_type="queue", target=queue,
                     count=waiting, detail={"changed": bool(deleted), "waiting": waiting})
        paused_queues.forget()
        transaction.on_commit(partial(_queue_changed, queue, False))
    logger.info("queue resumed queue=%s by=%r changed=%s waiting=%d", queue, actor.name,
                bool(deleted), waiting)
    return bool(deleted)
