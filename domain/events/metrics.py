"""The events' metric: what was accepted, by type (README "Metrics")."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable
from functools import partial

from domain.common.metrics import Counter
from domain.events.models import Event
from domain.events.registry import event_types

EVENTS_ACCEPTED = Counter(
    "conveyor_events_accepted_total",
    "Events stored (accepted: 202, or published by the server itself), by type; idempotent "
    "replays are not counted again.",
    ("type",), initial=lambda: [(t.name,) for t in event_types()])


def count_accepted(events: Iterable[Event]) -> Callable[[], None]:
    """What counts the events, for the publish to run once they are committed (with the hand
    -over of their jobs: domain/jobs/services.jobs_add)."""
    return partial(_count, Tally(event.type for event in events))


def _count(types: Tally) -> None:
    for event_type, n in types.items():
        EVENTS_ACCEPTED.inc(event_type, amount=n)
