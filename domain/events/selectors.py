"""Reads for events. A key sees only what it created, unless it has the admin scope."""

from __future__ import annotations

from domain.access.models import ApiKey
from domain.access.selectors import visible_to
from domain.common.errors import NotFound
from domain.events.models import BatchPublish, Event
from domain.jobs.models import Job


def event_get(*, event_id, api_key: ApiKey | None) -> Event:
    # Someone else's event is "not found", not "forbidden": ids must not leak.
    event = visible_to(Event.objects.all(), api_key).filter(pk=event_id).first()
    if event is None:
        raise NotFound("Event not found.")
    return event


def event_idempotent(*, api_key: ApiKey | None, idempotency_key: str) -> Event | None:
    """The event an earlier request stored under this key, if any."""
    return Event.objects.filter(api_key=api_key, idempotency_key=idempotency_key).first()


def batch_publish_idempotent(*, api_key: ApiKey | None,
                             idempotency_key: str) -> BatchPublish | None:
    """The batch an earlier request stored under this key, if any."""
    return BatchPublish.objects.filter(api_key=api_key, idempotency_key=idempotency_key).first()


def events_with_jobs(*, event_ids: list[str]) -> list[tuple[Event, list[Job]]]:
    """The events as they are now, in the order given, each with its jobs in `event_jobs`'
    order (creation, then handler name): two queries whatever the number of events. An id no
    longer there is left out."""
    events = {str(pk): event for pk, event in Event.objects.in_bulk(event_ids).items()}
    jobs: dict[str, list[Job]] = {event_id: [] for event_id in events}
    for job in Job.objects.filter(event_id__in=event_ids).order_by("created_at", "handler"):
        jobs[str(job.event_id)].append(job)
    return [(events[event_id], jobs[event_id]) for event_id in event_ids if event_id in events]
