"""Writes for events and jobs: publishing (the outbox), the job lifecycle, the relay."""

from __future__ import annotations

import hashlib
import logging
import traceback as tb
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, Exists, F, OuterRef, Q, Value, When
from django.utils import timezone

from domain.common.errors import Conflict, ValidationFailed
from domain.common.models import ApiKey
from domain.events.models import (
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

logger = logging.getLogger(__name__)


# --- Publishing -----------------------------------------------------------------------

@dataclass(frozen=True)
class EventDraft:
    """A validated event not yet written."""

    event_type: EventType
    payload: dict
    occurred_at: datetime
    request_hash: str


@dataclass(frozen=True)
class PublishResult:
    event: Event
    jobs: list[Job]
    created: bool  # False: an idempotent replay of an earlier request


def request_fingerprint(*, event_type: str, payload: Any, occurred_at: datetime | None) -> str:
    body = {"type": event_type, "payload": payload,
            "occurred_at": occurred_at.isoformat() if occurred_at else None}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def event_validate(*, event_type: str, payload: Any, occurred_at: datetime | None) -> EventDraft:
    """Check the type and the payload against its schema; raise ValidationFailed (422)."""
    registered = get_event_type(event_type)
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
        request_hash=request_fingerprint(event_type=event_type, payload=payload,
                                         occurred_at=occurred_at),
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
        request_hash=draft.request_hash,
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
    Event.objects.bulk_create([event for event, _ in pairs])
    jobs = [job for _, event_jobs in pairs for job in event_jobs]
    Job.objects.bulk_create(jobs)
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
    if idempotency_key:
        existing = _find_idempotent(api_key, idempotency_key)
        if existing is not None:
            return _replay(existing, draft)
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
    now = timezone.now()
    claimed = (
        Job.objects.filter(pk=job_id, status__in=RUNNABLE_JOB_STATUSES)
        .filter(Q(run_at__isnull=True) | Q(run_at__lte=now))
        .update(status=JobStatus.RUNNING, attempts=F("attempts") + 1, started_at=now,
                next_retry_at=None, worker=worker[:255])
    )
    if not claimed:
        return None
    return Job.objects.get(pk=job_id)


def _attempt(job: Job, outcome: str, now: datetime, exc: BaseException | None = None) -> JobAttempt:
    return JobAttempt(
        job=job,
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
    now = timezone.now()
    with transaction.atomic():
        Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            status=JobStatus.SUCCEEDED, result=result, finished_at=now, error=None,
        )
        _attempt(job, AttemptOutcome.SUCCEEDED, now).save(force_insert=True)
    _after_terminal(job)


def job_schedule_retry(*, job: Job, exc: BaseException, countdown: int) -> datetime:
    """Record a failed attempt and put the job in `retrying` until `next_retry_at`.

    Written before the retry message is published, so the message can never arrive while
    the row still says `running` (the claim would refuse it).
    """
    now = timezone.now()
    next_retry_at = now + timedelta(seconds=countdown)
    with transaction.atomic():
        Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
            status=JobStatus.RETRYING, next_retry_at=next_retry_at, error=_error(exc),
            traceback=_format_tb(exc), enqueued_at=now,
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
        event_refresh_status(event_id=job.event_id)


def event_refresh_status(*, event_id) -> None:
    """Close an event once every job is terminal: `failed` if any is dead, else `completed`.

    One conditional UPDATE run after the job's own commit, so of two jobs finishing at once
    the later statement sees both and closes the event.
    """
    open_jobs = Job.objects.filter(event_id=OuterRef("pk")).exclude(
        status__in=TERMINAL_JOB_STATUSES)
    dead_jobs = Job.objects.filter(event_id=OuterRef("pk"), status=JobStatus.DEAD)
    Event.objects.filter(pk=event_id).exclude(
        status__in=(EventStatus.COMPLETED, EventStatus.FAILED)
    ).exclude(Exists(open_jobs)).update(
        status=Case(When(Exists(dead_jobs), then=Value(EventStatus.FAILED)),
                    default=Value(EventStatus.COMPLETED)),
        completed_at=timezone.now(),
    )


# --- The outbox relay -----------------------------------------------------------------

def outbox_relay(*, batch_size: int | None = None, grace_seconds: int | None = None) -> int:
    """Send jobs that were committed but never reached the broker (or are due again).

    Rows are locked with SKIP LOCKED inside the transaction that sends them, so two relays
    running at once never pick the same job.
    """
    batch_size = batch_size or settings.OUTBOX_RELAY_BATCH_SIZE
    grace = timedelta(seconds=settings.OUTBOX_RELAY_GRACE_SECONDS
                      if grace_seconds is None else grace_seconds)
    total = 0
    while True:
        now = timezone.now()
        with transaction.atomic():
            due = list(
                Job.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("event")
                .filter(status__in=RUNNABLE_JOB_STATUSES, enqueued_at__isnull=True,
                        created_at__lte=now - grace)
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
