"""Retention of events and batch-publish records (domain/events/retention.py): an old event
goes once no job is left; a pending event, or one with a live job, stays."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from domain.events.models import BatchPublish, Event, EventStatus
from domain.events.retention import batch_publishes_prune, events_prune
from domain.jobs.models import JobStatus
from domain.jobs.retention import jobs_prune
from tests.factories import EventFactory, JobFactory

pytestmark = pytest.mark.django_db(transaction=True)

NOW = timezone.now()
CUTOFF = NOW - timedelta(days=30)
OLD = NOW - timedelta(days=45)


def test_old_events_go_once_their_jobs_are_gone_and_live_ones_stay():
    # given old events: finished with its job finished, one with a running job, one pending
    # (not yet handed to the broker) without jobs, and a recent finished one
    finished = EventFactory(created_at=OLD, status=EventStatus.COMPLETED)
    JobFactory(event=finished, status=JobStatus.SUCCEEDED, created_at=OLD, finished_at=OLD)
    running = EventFactory(created_at=OLD, status=EventStatus.DISPATCHED)
    JobFactory(event=running, status=JobStatus.RUNNING, created_at=OLD)
    pending = EventFactory(created_at=OLD, status=EventStatus.PENDING)
    recent = EventFactory(status=EventStatus.COMPLETED)

    # when events are pruned before their jobs, then after them
    assert events_prune(cutoff=CUTOFF).deleted["events_event"] == 0
    jobs_prune(cutoff=CUTOFF)
    report = events_prune(cutoff=CUTOFF)

    # then only the finished old event went, once its job had
    assert set(Event.objects.values_list("pk", flat=True)) == {running.pk, pending.pk, recent.pk}
    assert report.deleted == {"events_event": 1} and report.complete


def test_old_batch_publish_records_go():
    old = BatchPublish.objects.create(idempotency_key="old", request_hash="h", event_ids=[])
    BatchPublish.objects.filter(pk=old.pk).update(created_at=OLD)
    kept = BatchPublish.objects.create(idempotency_key="new", request_hash="h", event_ids=[])

    batch_publishes_prune(cutoff=CUTOFF)

    assert list(BatchPublish.objects.values_list("pk", flat=True)) == [kept.pk]
