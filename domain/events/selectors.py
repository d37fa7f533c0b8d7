"""Reads for events. A key sees only what it created, unless it has the admin scope."""

from __future__ import annotations

from domain.access.models import ApiKey
from domain.access.selectors import visible_to
from domain.common.errors import NotFound
from domain.events.models import Event


def event_get(*, event_id, api_key: ApiKey | None) -> Event:
    # Someone else's event is "not found", not "forbidden": ids must not leak.
    event = visible_to(Event.objects.all(), api_key).filter(pk=event_id).first()
    if event is None:
        raise NotFound("Event not found.")
    return event


def event_idempotent(*, api_key: ApiKey | None, idempotency_key: str) -> Event | None:
    """The event an earlier request stored under this key, if any."""
    return Event.objects.filter(api_key=api_key, idempotency_key=idempotency_key).first()
