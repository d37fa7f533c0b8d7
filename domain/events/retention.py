"""Retention of events and batch-publish records.

An event is pruned once it is older than the cutoff and has no job left: its jobs go first
(domain/jobs/retention.py, terminal ones only), and a job still queued, running or retrying
keeps its event. A `pending` event (stored, not yet handed to the broker) is never pruned.
Pruning an event forgets its Idempotency-Key, as pruning a batch's record forgets the batch's:
keys are remembered for RETENTION_JOBS_DAYS.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q

from domain.common.pruning import PruneReport, prune_table
from domain.events.models import BatchPublish, Event, EventStatus
from domain.jobs.models import Job


def events_prune(*, cutoff: datetime, deadline: float | None = None) -> PruneReport:
    """Delete events made before `cutoff` that are not pending and have no job left (the
    jobs' foreign key is named in keep_if_referenced: the pruner adds the NOT EXISTS)."""
    return prune_table(model=Event, where=Q(created_at__lt=cutoff) & ~Q(status=EventStatus.PENDING),
                       keep_if_referenced=(Job._meta.get_field("event"),), deadline=deadline)


def batch_publishes_prune(*, cutoff: datetime, deadline: float | None = None) -> PruneReport:
    """Delete the records of keyed batch publishes made before `cutoff`."""
    return prune_table(model=BatchPublish, where=Q(created_at__lt=cutoff), deadline=deadline)
