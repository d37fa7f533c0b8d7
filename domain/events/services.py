"""Writes for events and jobs: publishing (the outbox), the job lifecycle, the relay."""

from __future__ import annotations

import hashlib
import json
import logging
import traceback as tb
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

import orjson
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, Value, When
from django.utils import timezone

from domain.common.bulk import bulk_insert
from domain.common.errors import Conflict, ValidationFailed
from domain.common.models import ApiKey
from domain.common.parsers import json_depth
from domain.events.models import (
    REPLAYABLE_JOB_STATUSES,
    RUNNABLE_JOB_STATUSES,
    TERMINAL_JOB_STATUSES,
    AttemptOutcome,
    Event,
    EventStatus,
    Job,
    JobAttempt,
    JobStatus,
)
from domain.events.outbox import outbox_enqueue_on_commit, outbox_send
from domain.events.registry import EventType, get_event_type, get_job_kind
from domain.events.selectors import jobs_matching_replay

logger = logging.getLogger(__name__)


# --- Publishing -----------------------------------------------------------------------

@dataclass(frozen=True)
class EventDraft:
    """A validated event not yet written."""

    event_type: EventType
    payload: dict
    occurred_at: datetime
    given_occurred_at: datetime | None = None  # as the client sent it, for the fingerprint

    @cached_property
    def request_hash(self) -> str:
        """Computed only when asked: just idempotent publishes need it (a second full
        serialization of the payload that batch and key-less publishes do not pay)."""
        return request_fingerprint(event_type=self.event_type.name, payload=self.payload,
                                   occurred_at=self.given_occurred_at)


@dataclass(frozen=True)
class PublishResult:
    event: Event
    jobs: list[Job]
    created: bool  # False: an idempotent replay of an earlier request


def request_fingerprint(*, event_type: str, payload: Any, occurred_at: datetime | None) -> str:
    body = {"type": event_type, "payload": payload,
            "occurred_at": occurred_at.isoformat() if occurred_at else None}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _check_payload_limits(payload: Any) -> None:
    """Bound what one event may store, whatever its schema allows. Depth first: it is what
    makes serializing fail (orjson stops at 255 levels)."""
    depth = json_depth(payload)
    if depth > settings.API_MAX_PAYLOAD_DEPTH:
        raise ValidationFailed(
            f"payload nests {depth} levels deep; the limit is {settings.API_MAX_PAYLOAD_DEPTH}.",
            code="payload_too_deep",
            details={"limit": settings.API_MAX_PAYLOAD_DEPTH, "depth": depth})
    try:
        size = len(orjson.dumps(payload))
    except orjson.JSONEncodeError as exc:  # e.g. an integer beyond 64 bits
        raise ValidationFailed(f"payload cannot be stored as JSON: {exc}.",
                               code="invalid_payload") from exc
    if size > settings.API_MAX_PAYLOAD_BYTES:
        raise ValidationFailed(
            f"payload is {size} bytes; the limit is {settings.API_MAX_PAYLOAD_BYTES}.",
            code="payload_too_large",
            details={"limit": settings.API_MAX_PAYLOAD_BYTES, "size": size})


def event_validate(*, event_type: str, payload: Any, occurred_at: datetime | None) -> EventDraft:
    """Check the type, the payload's size and depth, and the payload against its schema;
    raise ValidationFailed (422)."""
    registered = get_event_type(event_type)
    _check_payload_limits(payload)
    errors = registered.validate_payload(payload)
    if errors:
        raise ValidationFailed(
            f"payload does not match the schema of {event_type!r}.",
            code="invalid_payload",
            details={"payload": errors},
        )
    return EventDraft(
        event_type=registered,
        payload=payload,
        occurred_at=occurred_at or timezone.now(),
        given_occurred_at=occurred_at,
    )


def _build(draft: EventDraft, *, api_key: ApiKey | None, correlation_id: str,
           idempotency_key: str | None, now: datetime) -> tuple[Event, list[Job]]:
    event = Event(
        type=draft.event_type.name,
        payload=draft.payload,
        occurred_at=draft.occurred_at,
        created_at=now,
        api_key=api_key,
        idempotency_key=idempotency_key,
        request_hash=draft.request_hash if idempotency_key else "",
        correlation_id=correlation_id,
    )
    if not draft.event_type.handlers:
        event.status = EventStatus.COMPLETED
        event.completed_at = now
    jobs = [
        Job(
            event=event,
            kind=handler.kind,
            handler=handler.name,
            params=handler.params(draft.payload),
            max_attempts=get_job_kind(handler.kind).retry.max_attempts,
            created_at=now,
            api_key=api_key,
            correlation_id=correlation_id,
        )
        for handler in draft.event_type.handlers
    ]
    return event, jobs


def _write(pairs: list[tuple[Event, list[Job]]]) -> None:
    """Insert events and their jobs (the caller holds the transaction), send after commit."""
    bulk_insert(Event, [event for event, _ in pairs])
    jobs = [job for _, event_jobs in pairs for job in event_jobs]
    bulk_insert(Job, jobs)
    outbox_enqueue_on_commit(jobs)


def event_publish(
    *,
    event_type: str,
    payload: Any,
    occurred_at: datetime | None = None,
    api_key: ApiKey | None = None,
    idempotency_key: str | None = None,
    correlation_id: str = "",
) -> PublishResult:
    """Store an event and one job per handler in one transaction; enqueue them on commit.

    With an idempotency key, the same key from the same API key returns the first event
    (also when two requests race: the unique constraint decides, the loser reads the winner).
    """
    draft = event_validate(event_type=event_type, payload=payload, occurred_at=occurred_at)
    # No lookup first: the insert is tried and the unique constraint answers for a key seen
    # before. A first request (the common case) saves a round trip; a replay pays a failed
    # INSERT instead of a SELECT.
    event, jobs = _build(draft, api_key=api_key, correlation_id=correlation_id,
                         idempotency_key=idempotency_key, now=timezone.now())
    try:
        with transaction.atomic():
            _write([(event, jobs)])
    except IntegrityError:
        existing = _find_idempotent(api_key, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return _replay(existing, draft)
    return PublishResult(event=event, jobs=jobs, created=True)


def _find_idempotent(api_key: ApiKey | None, key: str) -> Event | None:
    return Event.objects.filter(api_key=api_key, idempotency_key=key).first()


def _replay(existing: Event, draft: EventDraft) -> PublishResult:
    if existing.request_hash != draft.request_hash:
        raise Conflict(
            "This Idempotency-Key was already used with a different request body.",
            code="idempotency_key_reused",
            details={"event": str(existing.pk)},
        )
    return PublishResult(event=existing, jobs=list(existing.jobs.order_by("created_at", "handler")),
                         created=False)


def event_publish_batch(
    *, events: list[dict], api_key: ApiKey | None = None, correlation_id: str = ""
) -> list[PublishResult]:
    """All or nothing: every event is validated before any is written, then one transaction."""
    limit = settings.API_MAX_BATCH_EVENTS
    if not events:
        raise ValidationFailed("A batch needs at least one event.", code="empty_batch")
    if len(events) > limit:
        raise ValidationFailed(f"A batch holds at most {limit} events.", code="batch_too_large",
                               details={"limit": limit, "received": len(events)})
    drafts: list[EventDraft] = []
    errors: dict[str, Any] = {}
    for index, item in enumerate(events):
        try:
            drafts.append(event_validate(event_type=item["type"], payload=item["payload"],
                                         occurred_at=item.get("occurred_at")))
        except ValidationFailed as exc:
            errors[str(index)] = {"code": exc.code, "message": exc.message, **exc.details}
    if errors:
        raise ValidationFailed(f"{len(errors)} of {len(events)} events are invalid; "
                               "nothing was stored.", details={"events": errors})
    now = timezone.now()
    pairs = [_build(d, api_key=api_key, correlation_id=correlation_id, idempotency_key=None,
                    now=now) for d in drafts]
    with transaction.atomic():
        _write(pairs)
    return [PublishResult(event=event, jobs=jobs, created=True) for event, jobs in pairs]


# --- Jobs triggered directly ----------------------------------------------------------

def job_create(
    *,
    kind: str,
    params: Any,
    api_key: ApiKey | None = None,
    run_at: datetime | None = None,
    correlation_id: str = "",
) -> Job:
    job_kind = get_job_kind(kind)
    job_kind.validate_params(params)
    job = Job(kind=job_kind.name, params=params, max_attempts=job_kind.retry.max_attempts,
              api_key=api_key, run_at=run_at, correlation_id=correlation_id)
    with transaction.atomic():
        job.save(force_insert=True)
        outbox_enqueue_on_commit([job])
    return job


# --- The job lifecycle, driven by the worker ------------------------------------------

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
    worker = worker[:255]
    runnable = [str(s) for s in RUNNABLE_JOB_STATUSES]
    if connection.vendor == "postgresql":
        # One round trip: RETURNING gives exactly the rows this statement claimed, as they
        # are after it.
        jobs = list(Job.objects.raw(
            f'UPDATE "{Job._meta.db_table}" SET status = %s, attempts = attempts + 1, '  # noqa: S608 - the model's own table name
            "started_at = %s, next_retry_at = NULL, worker = %s "
            "WHERE id = ANY(%s::uuid[]) AND status = ANY(%s) "
            "AND (run_at IS NULL OR run_at <= %s) "
            "AND (next_retry_at IS NULL OR next_retry_at <= %s) RETURNING *",
            [JobStatus.RUNNING, now, worker, [str(i) for i in job_ids], runnable, now, now]))
    else:
        # SQLite (local only): the transaction holds the database's write lock from BEGIN, so
        # nobody else can claim between the UPDATE and the read of what it claimed.
        with transaction.atomic():
            Job.objects.filter(pk__in=job_ids, status__in=runnable).filter(
                Q(run_at__isnull=True) | Q(run_at__lte=now)).filter(
                Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=now)).update(
                status=JobStatus.RUNNING, attempts=F("attempts") + 1, started_at=now,
                next_retry_at=None, worker=worker)
            jobs = list(Job.objects.filter(pk__in=job_ids, status=JobStatus.RUNNING,
                                           started_at=now, worker=worker))
    order = {str(job_id): n for n, job_id in enumerate(job_ids)}
    jobs.sort(key=lambda job: order.get(str(job.pk), 0))
    return jobs


def jobs_release(*, jobs: list[Job]) -> list[Job]:
    """Give claimed jobs that never ran back to `queued`, as if they had not been claimed
    (a micro-batch stopped early by its soft time limit). Returns the jobs released."""
    released = [job for job in jobs if job.status == JobStatus.RUNNING]
    if released:
        Job.objects.filter(pk__in=[j.pk for j in released], status=JobStatus.RUNNING).update(
            status=JobStatus.QUEUED, attempts=F("attempts") - 1, started_at=None, worker="",
            enqueued_at=None)
    return released


def jobs_succeed(*, outcomes: list[tuple[Job, Any]]) -> None:
    """Record successes, one job or a micro-batch: the jobs' rows, their attempts, then their
    events' roll-up. Only jobs still `running` change and get an attempt row. On PostgreSQL the
    first two are one statement (below); elsewhere a few, in one transaction."""
    if not outcomes:
        return
    now = timezone.now()
    if connection.vendor == "postgresql":
        _succeed_pg(outcomes, now)
    else:
        # SQLite (local only): one conditional UPDATE per job tells which were still running.
        with transaction.atomic():
            moved = [job for job, result in outcomes
                     if Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
                         status=JobStatus.SUCCEEDED, result=result, finished_at=now,
                         error=None)]
            JobAttempt.objects.bulk_create(
                [_attempt(job, AttemptOutcome.SUCCEEDED, now) for job in moved])
    for job, _ in outcomes:
        job.status, job.finished_at = JobStatus.SUCCEEDED, now
    event_ids = {job.event_id for job, _ in outcomes if job.event_id}
    if event_ids:
        events_refresh_status(event_ids=event_ids)


def _succeed_pg(outcomes: list[tuple[Job, Any]], now: datetime) -> None:
    """One statement, one commit: each job its own result (UPDATE … FROM unnest; Django's
    bulk_update builds a CASE per row and is Python-bound, PERF-FACTS.md), and an attempt row
    for exactly the jobs that statement moved from `running` (a job cancelled or rescued in
    the meantime gets none)."""
    job_table, attempt_table = Job._meta.db_table, JobAttempt._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f'WITH v AS (SELECT unnest(%(ids)s::uuid[]) AS id, '  # noqa: S608 - the models' own table names
            "unnest(%(results)s::jsonb[]) AS result), "
            f'done AS (UPDATE "{job_table}" AS j SET status = %(succeeded)s, '
            "result = v.result, finished_at = %(now)s, error = NULL FROM v "
            "WHERE j.id = v.id AND j.status = %(running)s "
            "RETURNING j.id, j.replays, j.attempts, j.started_at, j.worker) "
            f'INSERT INTO "{attempt_table}" (job_id, run, number, started_at, finished_at, '
            "outcome, error_type, error_message, traceback, worker) "
            "SELECT id, replays, attempts, COALESCE(started_at, %(now)s), %(now)s, "
            "%(outcome)s, '', '', '', worker FROM done",
            {"ids": [str(job.pk) for job, _ in outcomes],
             "results": [None if r is None else json.dumps(r) for _, r in outcomes],
             "now": now, "succeeded": JobStatus.SUCCEEDED.value,
             "outcome": AttemptOutcome.SUCCEEDED.value, "running": JobStatus.RUNNING.value})


def _attempt(job: Job, outcome: str, now: datetime, exc: BaseException | None = None) -> JobAttempt:
    return JobAttempt(
        job=job,
        run=job.replays,
        number=job.attempts,
        started_at=job.started_at or now,
        finished_at=now,
        outcome=outcome,
        error_type=type(exc).__name__ if exc else "",
        error_message=str(exc)[:2000] if exc else "",
        traceback=_format_tb(exc),
        worker=job.worker,
    )


def _format_tb(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    return "".join(tb.format_exception(type(exc), exc, exc.__traceback__))[-20000:]


def _error(exc: BaseException) -> dict:
    return {"type": type(exc).__name__, "message": str(exc)[:2000]}


def job_succeed(*, job: Job, result: Any = None) -> None:
    jobs_succeed(outcomes=[(job, result)])


def job_schedule_retry(*, job: Job, exc: BaseException, countdown: int,
                       via_broker: bool = True) -> datetime:
    """Record a failed attempt and put the job in `retrying` until `next_retry_at`.

    Written before the retry message is published, so the message can never arrive while
    the row still says `running` (the claim would refuse it). With `via_broker=False` no
    message is coming: the relay sends the job once `next_retry_at` has passed.
    """
    now = timezone.now()
    next_retry_at = now + timedelta(seconds=countdown)
    with transaction.atomic():
        Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            status=JobStatus.RETRYING, next_retry_at=next_retry_at, error=_error(exc),
            traceback=_format_tb(exc), enqueued_at=now if via_broker else None,
        )
        _attempt(job, AttemptOutcome.RETRY, now, exc).save(force_insert=True)
    return next_retry_at


def job_retry_not_sent(*, job: Job) -> None:
    """The retry message could not be published: leave the job to the relay."""
    Job.objects.filter(pk=job.pk, status=JobStatus.RETRYING).update(enqueued_at=None)


def job_fail(*, job: Job, exc: BaseException) -> None:
    """Out of attempts, or a permanent error: the job is dead and keeps its error."""
    now = timezone.now()
    with transaction.atomic():
        Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            status=JobStatus.DEAD, error=_error(exc), traceback=_format_tb(exc), finished_at=now,
        )
        _attempt(job, AttemptOutcome.FAILED, now, exc).save(force_insert=True)
    _after_terminal(job)


def _after_terminal(job: Job) -> None:
    if job.event_id:
        events_refresh_status(event_ids=[job.event_id])


def events_refresh_status(*, event_ids) -> None:
    """Close events once every job is terminal: `failed` if any is dead, else `completed`.

    One conditional UPDATE run after the jobs' own commit, so of two jobs finishing at once
    the later statement sees both and closes the event.
    """
    open_jobs = Job.objects.filter(event_id=OuterRef("pk")).exclude(
        status__in=TERMINAL_JOB_STATUSES)
    dead_jobs = Job.objects.filter(event_id=OuterRef("pk"), status=JobStatus.DEAD)
    Event.objects.filter(pk__in=event_ids).exclude(
        status__in=(EventStatus.COMPLETED, EventStatus.FAILED)
    ).exclude(Exists(open_jobs)).update(
        status=Case(When(Exists(dead_jobs), then=Value(EventStatus.FAILED)),
                    default=Value(EventStatus.COMPLETED)),
        completed_at=timezone.now(),
    )


# --- The outbox relay -----------------------------------------------------------------

def outbox_relay(*, batch_size: int | None = None, grace_seconds: int | None = None,
                 stale_seconds: int | None = None) -> int:
    """Send jobs that were committed but never reached the broker, are due again, or whose
    message was lost (queued, handed over long ago, never started: e.g. a Redis restart
    without persistence). A re-sent duplicate is harmless: the claim lets one run through.

    Rows are locked with SKIP LOCKED inside the transaction that sends them, so two relays
    running at once never pick the same job.
    """
    batch_size = batch_size or settings.OUTBOX_RELAY_BATCH_SIZE
    grace = timedelta(seconds=settings.OUTBOX_RELAY_GRACE_SECONDS
                      if grace_seconds is None else grace_seconds)
    stale = timedelta(seconds=settings.OUTBOX_STALE_SECONDS
                      if stale_seconds is None else stale_seconds)
    total = 0
    while True:
        now = timezone.now()
        never_sent = Q(enqueued_at__isnull=True, created_at__lte=now - grace)
        lost = Q(status=JobStatus.QUEUED, enqueued_at__lt=now - stale)
        with transaction.atomic():
            due = list(
                Job.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("event")
                .filter(status__in=RUNNABLE_JOB_STATUSES)
                .filter(never_sent | lost)
                .filter(Q(run_at__isnull=True) | Q(run_at__lte=now))
                .filter(Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=now))
                .order_by("created_at")[:batch_size]
            )
            if not due:
                break
            sent = outbox_send(due)
        total += len(sent)
        if len(sent) < len(due) or len(due) < batch_size:
            break
    if total:
        logger.info("outbox relay sent=%d", total)
    return total


# --- Operators: cancel, replay, rescue ------------------------------------------------

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
    _after_terminal(job)
    return job


def _reopen_events(event_ids: set) -> None:
    if event_ids:
        Event.objects.filter(
            pk__in=event_ids, status__in=(EventStatus.COMPLETED, EventStatus.FAILED)
        ).update(status=EventStatus.DISPATCHED, completed_at=None)


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


def job_replay(*, job: Job) -> Job:
    """Run a dead or cancelled job again with fresh attempts; its attempt history stays."""
    with transaction.atomic():
        replayed = Job.objects.filter(pk=job.pk, status__in=REPLAYABLE_JOB_STATUSES).update(
            **_REPLAY_FIELDS)
        job.refresh_from_db()
        if not replayed:
            raise Conflict(f"A {job.status} job cannot be replayed; only dead or cancelled ones.",
                           code="job_not_replayable", details={"status": job.status})
        _reopen_events({job.event_id} if job.event_id else set())
        outbox_enqueue_on_commit([job])
    logger.info("job replayed job_id=%s kind=%s replays=%d", job.pk, job.kind, job.replays)
    return job


def jobs_replay(*, api_key: ApiKey | None, status: str = JobStatus.DEAD, kind: str | None = None,
                event_type: str | None = None, since: datetime | None = None,
                until: datetime | None = None, limit: int = 10_000) -> int:
    """Replay every dead (or cancelled) job matching the filter; answer how many."""
    if status not in REPLAYABLE_JOB_STATUSES:
        raise ValidationFailed("Only dead or cancelled jobs can be replayed.",
                               code="invalid_status", details={"status": status})
    jobs = jobs_matching_replay(api_key=api_key, status=status, kind=kind,
                                event_type=event_type, since=since, until=until)
    with transaction.atomic():
        ids = list(jobs.select_for_update(skip_locked=True, of=("self",))
                   .order_by("created_at").values_list("pk", flat=True)[:limit])
        if not ids:
            return 0
        count = Job.objects.filter(pk__in=ids, status__in=REPLAYABLE_JOB_STATUSES).update(
            **_REPLAY_FIELDS)
        replayed = list(Job.objects.filter(pk__in=ids).select_related("event"))
        _reopen_events({j.event_id for j in replayed if j.event_id})
        outbox_enqueue_on_commit(replayed)
    logger.info("jobs replayed count=%d status=%s kind=%s event_type=%s", count, status, kind,
                event_type)
    return count


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
            .select_related("event")
            .filter(status=JobStatus.RUNNING, started_at__lt=now - older_than)
            .order_by("started_at")[:batch_size]
        )
        if not orphans:
            return {"requeued": 0, "dead": 0}
        JobAttempt.objects.bulk_create([
            _attempt(job, AttemptOutcome.LOST, now,
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
    for job in dead:
        _after_terminal(job)
    logger.warning("orphans rescued requeued=%d dead=%d", len(requeue), len(dead))
    return {"requeued": len(requeue), "dead": len(dead)}
