"""Publishing: validate an event, store it (the outbox) with one job per handler in one
transaction, and hand the jobs to the broker after commit (domain/jobs/outbox.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import orjson
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from domain.access.models import ApiKey
from domain.common.errors import Conflict, ValidationFailed
from domain.common.fastpaths import insert_rows, insert_rows_together
from domain.common.parsers import json_depth
from domain.events.metrics import count_accepted
from domain.events.models import BatchPublish, Event, EventStatus
from domain.events.registry import EventType, get_event_type, handlers_for
from domain.events.selectors import batch_publish_idempotent, event_idempotent, events_with_jobs
from domain.jobs.models import Job
from domain.jobs.selectors import event_jobs
from domain.jobs.services import job_build, jobs_add, jobs_inserted


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


def _fingerprinted(event_type: str, payload: Any, occurred_at: datetime | None) -> dict:
    return {"type": event_type, "payload": payload,
            "occurred_at": occurred_at.isoformat() if occurred_at else None}


def _sha256(body: Any) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def request_fingerprint(*, event_type: str, payload: Any, occurred_at: datetime | None) -> str:
    return _sha256(_fingerprinted(event_type, payload, occurred_at))


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


def event_validate(*, event_type: str, payload: Any, occurred_at: datetime | None,
                   by_server: bool = False) -> EventDraft:
    """Check the type (one clients may publish, unless `by_server`), the payload's size and
    depth, and the payload against its schema; raise ValidationFailed (422)."""
    registered = get_event_type(event_type, publishable=not by_server)
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
    handlers = handlers_for(draft.event_type)
    if not handlers:
        event.status = EventStatus.COMPLETED
        event.completed_at = now
    jobs = [
        job_build(kind=handler.kind, params=handler.params(draft.payload), created_at=now,
                  handler=handler.name, event=event, api_key=api_key,
                  correlation_id=correlation_id)
        for handler in handlers
    ]
    return event, jobs


def _insert(pairs: list[tuple[Event, list[Job]]]) -> None:
    """Insert events and their jobs (the caller holds the transaction), send after commit."""
    insert_rows(Event, [event for event, _ in pairs])
    jobs_add(jobs=[job for _, jobs in pairs for job in jobs],
             also=count_accepted(event for event, _ in pairs))


def _write(pairs: list[tuple[Event, list[Job]]]) -> None:
    """Store events and their jobs all or nothing, and hand the jobs over after the commit.

    Outside a transaction (an API request; ATOMIC_REQUESTS is off) on PostgreSQL that is one
    statement committing by itself: one round trip where BEGIN, two INSERTs and COMMIT were
    four. Inside the caller's transaction, a savepoint in it."""
    events = [event for event, _ in pairs]
    jobs = [job for _, jobs in pairs for job in jobs]
    if not transaction.get_connection().in_atomic_block and insert_rows_together(
            [(Event, events), (Job, jobs)]):
        jobs_inserted(jobs=jobs, also=count_accepted(events))
        return
    with transaction.atomic():
        _insert(pairs)


def event_publish(
    *,
    event_type: str,
    payload: Any,
    occurred_at: datetime | None = None,
    api_key: ApiKey | None = None,
    idempotency_key: str | None = None,
    correlation_id: str = "",
    by_server: bool = False,
) -> PublishResult:
    """Store an event and one job per handler in one transaction; enqueue them on commit.

    With an idempotency key, the same key from the same API key returns the first event
    (also when two requests race: the unique constraint decides, the loser reads the winner).
    `by_server`: the server's own operational events (types clients may not publish).
    """
    draft = event_validate(event_type=event_type, payload=payload, occurred_at=occurred_at,
                           by_server=by_server)
    # No lookup first: the insert is tried and the unique constraint answers for a key seen
    # before. A first request (the common case) saves a round trip; a replay pays a failed
    # INSERT instead of a SELECT.
    event, jobs = _build(draft, api_key=api_key, correlation_id=correlation_id,
                         idempotency_key=idempotency_key, now=timezone.now())
    try:
        _write([(event, jobs)])
    except IntegrityError:
        existing = (event_idempotent(api_key=api_key, idempotency_key=idempotency_key)
                    if idempotency_key else None)
        if existing is None:
            raise
        return _replay(existing, draft)
    return PublishResult(event=event, jobs=jobs, created=True)


def _replay(existing: Event, draft: EventDraft) -> PublishResult:
    if existing.request_hash != draft.request_hash:
        raise Conflict(
            "This Idempotency-Key was already used with a different request body.",
            code="idempotency_key_reused",
            details={"event": str(existing.pk)},
        )
    return PublishResult(event=existing, jobs=event_jobs(event_id=existing.pk), created=False)


@dataclass(frozen=True)
class BatchPublishResult:
    results: list[PublishResult]  # in the request's order
    created: bool  # False: an idempotent replay of an earlier request


def batch_fingerprint(drafts: list[EventDraft]) -> str:
    """One hash for the whole batch, over the events as the client sent them. Its input differs
    in shape from a single publish's (`request_fingerprint`), so the two never match."""
    return _sha256({"batch": [_fingerprinted(d.event_type.name, d.payload, d.given_occurred_at)
                              for d in drafts]})


def _validate_batch(events: list[dict]) -> list[EventDraft]:
    """All or nothing: every event is validated before any is written."""
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
    return drafts


def event_publish_batch(
    *, events: list[dict], api_key: ApiKey | None = None, idempotency_key: str | None = None,
    correlation_id: str = "",
) -> BatchPublishResult:
    """Validate every event, then store them all in one transaction.

    With an idempotency key the whole batch is one idempotent request, as a single publish is
    (`event_publish`): the same key and body answer the first batch's events, a different body
    is 409. A `BatchPublish` row holds the key and the event ids in order, and the first event
    carries the key too, so that single and batch publishes share one key space per API key:
    the events' own unique constraint makes a key used for one kind of publish a 409 for the
    other, without a lookup on either path.
    """
    drafts = _validate_batch(events)
    now = timezone.now()
    pairs = [_build(d, api_key=api_key, correlation_id=correlation_id, idempotency_key=None,
                    now=now) for d in drafts]
    if idempotency_key is None:
        _write(pairs)
        return _created(pairs)
    request_hash = batch_fingerprint(drafts)
    first = pairs[0][0]
    first.idempotency_key, first.request_hash = idempotency_key, request_hash
    record = BatchPublish(api_key=api_key, idempotency_key=idempotency_key,
                          request_hash=request_hash, created_at=now,
                          event_ids=[str(event.pk) for event, _ in pairs])
    # No lookup first, as in event_publish: the row goes in before the events (a racing
    # duplicate waits on it and writes nothing), and a key seen before fails the INSERT.
    try:
        with transaction.atomic():
            record.save(force_insert=True)
            _insert(pairs)
    except IntegrityError:
        replayed = _batch_replay(api_key=api_key, idempotency_key=idempotency_key,
                                 request_hash=request_hash)
        if replayed is None:
            raise
        return replayed
    return _created(pairs)


def _created(pairs: list[tuple[Event, list[Job]]]) -> BatchPublishResult:
    return BatchPublishResult(
        results=[PublishResult(event=event, jobs=jobs, created=True) for event, jobs in pairs],
        created=True)


def _batch_replay(*, api_key: ApiKey | None, idempotency_key: str,
                  request_hash: str) -> BatchPublishResult | None:
    """The earlier request under this key: its batch (same body) or a 409. None if no request
    holds the key (the IntegrityError was about something else)."""
    earlier = batch_publish_idempotent(api_key=api_key, idempotency_key=idempotency_key)
    if earlier is None:
        single = event_idempotent(api_key=api_key, idempotency_key=idempotency_key)
        if single is None:
            return None
        raise Conflict("This Idempotency-Key was already used for a single publish.",
                       code="idempotency_key_reused", details={"event": str(single.pk)})
    if earlier.request_hash != request_hash:
        raise Conflict(
            "This Idempotency-Key was already used with a different request body.",
            code="idempotency_key_reused", details={"event": earlier.event_ids[0]})
    return BatchPublishResult(
        results=[PublishResult(event=event, jobs=jobs, created=False)
                 for event, jobs in events_with_jobs(event_ids=earlier.event_ids)],
        created=False)
