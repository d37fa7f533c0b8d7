"""The output serializers render directly (for speed); their output must stay exactly what
DRF's declared fields produce, for every state a job or an event can be in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rest_framework import serializers
from rest_framework.test import APIRequestFactory

from domain.events.apis import EventOutputSerializer, JobOutputSerializer
from domain.events.models import EventStatus, JobStatus
from tests.factories import EventFactory, JobFactory


def _request():
    from rest_framework.request import Request

    return Request(APIRequestFactory().get("/api/v1/jobs", HTTP_HOST="testserver"))


def _drf_fields_output(serializer: serializers.Serializer, instance) -> dict:
    # DRF's own field-by-field rendering, bypassing the override under test
    return serializers.Serializer.to_representation(serializer, instance)


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["queued", "running", "retrying", "succeeded", "dead"])
def test_job_rendering_equals_the_declared_fields(state):
    # given a job in each state, with every optional field either set or empty
    t = datetime(2026, 11, 21, 8, 30, 15, 123456, tzinfo=UTC)
    extra = {
        "queued": {"run_at": t + timedelta(hours=1)},
        "running": {"started_at": t, "attempts": 1, "worker": "w@h"},
        "retrying": {"attempts": 2, "next_retry_at": t.replace(microsecond=0),
                     "error": {"type": "TimeoutError", "message": "slow"}},
        "succeeded": {"attempts": 1, "started_at": t, "finished_at": t + timedelta(seconds=1),
                      "result": {"ok": True, "n": [1, 2]}, "progress_done": 3,
                      "progress_total": 3},
        "dead": {"attempts": 5, "finished_at": t, "error": {"type": "ValueError",
                                                             "message": "bad"}},
    }[state]
    job = JobFactory(status=JobStatus(state), params={"keys": ["a"]}, event=EventFactory(),
                     handler="demo.noop", **extra)
    standalone = JobFactory(event=None)
    serializer = JobOutputSerializer(context={"request": _request()})

    # then the direct rendering equals DRF's, field for field
    for j in (job, standalone):
        j.refresh_from_db()
        assert serializer.to_representation(j) == _drf_fields_output(serializer, j)
    assert serializer.to_representation(job)["url"] == (
        f"http://testserver/api/v1/jobs/{job.pk}")


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
    serializer = EventOutputSerializer(context={"request": _request()})

    # then the direct rendering equals DRF's (jobs included), and the jobs passed in the
    # context are the ones rendered
    assert serializer.to_representation(event) == _drf_fields_output(serializer, event)
    many = EventOutputSerializer([event], many=True, context={
        "request": _request(), "jobs": {event.pk: []}}).data
    assert many[0]["jobs"] == []
