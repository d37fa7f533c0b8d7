"""The one place the domain talks to Celery: hand committed jobs to the broker.

Jobs are written in the caller's transaction; the send happens after commit
(`transaction.on_commit`), so a worker never sees a job id that is not in the database. If the
broker is down the jobs stay `enqueued_at IS NULL` and the outbox relay sends them later.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import kombu.exceptions
import redis.exceptions
from celery import current_app
from django.db import transaction
from django.utils import timezone

from domain.events.models import Event, EventStatus, Job
from domain.events.registry import get_job_kind

logger = logging.getLogger(__name__)

BROKER_ERRORS = (
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,  # includes ConnectionError and socket timeouts
)


def outbox_enqueue_on_commit(jobs: Iterable[Job]) -> None:
    jobs = list(jobs)
    if jobs:
        transaction.on_commit(lambda: outbox_send(jobs))


def outbox_send(jobs: list[Job]) -> list[Job]:
    """Publish every due job over one producer connection; record what was handed over.

    Returns the jobs sent. A broker failure is logged, not raised: the rows are durable and
    the relay retries them.
    """
    now = timezone.now()
    due = [job for job in jobs if job.run_at is None or job.run_at <= now]
    sent: list[Job] = []
    if due:
        app = current_app
        task_names = {job.pk: get_job_kind(job.kind).task_name for job in due}
        try:
            with app.producer_or_acquire() as producer:
                for job in due:
                    app.send_task(
                        task_names[job.pk],
                        args=[str(job.id)],
                        task_id=str(job.id),
                        producer=producer,
                        headers={"correlation_id": job.correlation_id},
                    )
                    sent.append(job)
        except BROKER_ERRORS as exc:
            logger.warning("outbox send failed sent=%d unsent=%d error=%r; the relay will retry",
                           len(sent), len(due) - len(sent), exc)
    if sent:
        _mark_sent(sent, now)
    return sent


def _mark_sent(sent: list[Job], now) -> None:
    Job.objects.filter(pk__in=[j.pk for j in sent]).update(enqueued_at=now)
    event_ids = {j.event_id for j in sent if j.event_id}
    ready: set = set()
    if event_ids:
        # Only an event whose every job has been handed over counts as dispatched.
        blocked = set(
            Job.objects.filter(event_id__in=event_ids, enqueued_at__isnull=True)
            .values_list("event_id", flat=True)
            .distinct()
        )
        ready = event_ids - blocked
        if ready:
            Event.objects.filter(pk__in=ready, status=EventStatus.PENDING).update(
                status=EventStatus.DISPATCHED, dispatched_at=now
            )
    # Keep the caller's objects true to the rows, so a 202 shows what was really done.
    for job in sent:
        job.enqueued_at = now
        event = job.event if Job.event.is_cached(job) else None
        if event is not None and event.pk in ready and event.status == EventStatus.PENDING:
            event.status = EventStatus.DISPATCHED
            event.dispatched_at = now
