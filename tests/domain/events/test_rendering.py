"""The event output serializer renders directly (for speed); its output must stay exactly what
DRF's declared fields produce, for every status an event can be in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.events.apis import EventMinimalOutputSerializer, EventOutputSerializer
from domain.events.models import EventStatus
from tests.conftest import drf_fields_output, drf_request
from tests.factories import EventFactory, JobFactory


@pytest.mark.django_db
@pytest.mark.parametrize("status", [EventStatus.PENDING, EventStatus.DISPATCHED,
                                    EventStatus.COMPLETED, EventStatus.FAILED])
def test_event_rendering_equals_the_declared_fields(status):
    # given an event with two jobs, and timestamps with and without microseconds
    t = datetime(2026, 11, 21, 8, 30, 15, tzinfo=UTC)
    event = EventFactory(status=status, occurred_at=t, dispatched_at=t + timedelta(
        microseconds=5), payload={"message": "é", "nested": {"a": [1, None]}})
    JobFactory(event=event, handler="first")
    JobFactory(event=event, handler="second")
    event.refresh_from_db()
    serializer = EventOutputSerializer(context={"request": drf_request()})

    # then the direct rendering equals DRF's (jobs included), and the jobs passed in the
    # context are the ones rendered
    assert serializer.to_representation(event) == drf_fields_output(serializer, event)
    many = EventOutputSerializer([event], many=True, context={
        "request": drf_request(), "jobs": {event.pk: []}}).data
    assert many[0]["jobs"] == []


@pytest.mark.django_db
@pytest.mark.parametrize("status", [EventStatus.PENDING, EventStatus.COMPLETED])
def test_minimal_event_rendering_equals_the_declared_fields(status):
    # given an event with two jobs
    event = EventFactory(status=status)
    JobFactory(event=event, handler="first")
    JobFactory(event=event, handler="second", status="running")
    serializer = EventMinimalOutputSerializer(context={"request": drf_request()})

    # then the direct rendering equals DRF's, and the jobs passed in the context are the ones
    # rendered
    assert serializer.to_representation(event) == drf_fields_output(serializer, event)
    many = EventMinimalOutputSerializer([event], many=True, context={
        "request": drf_request(), "jobs": {event.pk: []}}).data
    assert many[0]["jobs"] == []
