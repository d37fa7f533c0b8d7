"""The one place the domain talks to Celery: hand committed jobs to the broker.

Jobs are written in the caller's transaction; the send happens after commit
(`transaction.on_commit`), so a worker never sees a job id that is not in the database. If the
broker is down the jobs stay `enqueued_at IS NULL` and the outbox relay sends them later.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import kombu.exceptions
import redis.exceptions
from celery import current_app
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from domain.events.models import Event, EventStatus, Job
from domain.events.registry import get_job_kind

logger = logging.getLogger(__name__)
_JOB = f'"{Job._meta.db_table}"'
_EVENT = f'"{Event._meta.db_table}"'

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


def outbox_send(jobs: list[Job], *, max_batch: int | None = None) -> list[Job]:
    """Publish every due job over one producer connection; record what was handed over.

    Jobs of a kind with `batch_size` > 1 travel together: one message carries up to that many
    job ids (micro-batching; the worker claims and records them set-wise, workers/base.py).
    A message carrying one job keeps the job id as its task id. `max_batch` caps the jobs per
    message below the kinds' own sizes (1: one message per job).

    Returns the jobs sent. A broker failure is logged, not raised: the rows are durable and
    the relay retries them.
    """
    now = timezone.now()
    due = [job for job in jobs if job.run_at is None or job.run_at <= now]
    sent: list[Job] = []
    if due:
        app = current_app
        try:
            with app.producer_or_acquire() as producer:
                for task_name, chunk in _messages(due, max_batch):
                    if len(chunk) == 1:
                        job = chunk[0]
                        app.send_task(task_name, args=[str(job.id)], task_id=str(job.id),
                                      producer=producer,
                                      headers={"correlation_id": job.correlation_id})
                    else:
                        # Each job keeps its own correlation id on its row; the message
                        # carries the first one for its log lines.
                        app.send_task(task_name, args=[[str(job.id) for job in chunk]],
                                      producer=producer,
                                      headers={"correlation_id": chunk[0].correlation_id})
                    sent.extend(chunk)
        except BROKER_ERRORS as exc:
            logger.warning("outbox send failed sent=%d unsent=%d error=%r; the relay will retry",
                           len(sent), len(due) - len(sent), exc)
    if sent:
        _mark_sent(sent, jobs, now)
    return sent


def _messages(due: list[Job], max_batch: int | None) -> Iterator[tuple[str, list[Job]]]:
    """(task name, jobs) for each message to send, in the order the jobs came."""
    groups: dict[str, list[Job]] = {}
    for job in due:
        kind = get_job_kind(job.kind)
        size = kind.batch_size if max_batch is None else max(1, min(kind.batch_size, max_batch))
        if size == 1:
            yield kind.task_name, [job]
            continue
        group = groups.setdefault(kind.task_name, [])
        group.append(job)
        if len(group) >= size:
            yield kind.task_name, group
            groups[kind.task_name] = []
    for task_name, group in groups.items():
        if group:
            yield task_name, group


def _mark_sent(sent: list[Job], given: list[Job], now) -> None:
    """Stamp the jobs, and move to `dispatched` the events none of whose jobs is still waiting
    to be handed over: one statement on PostgreSQL, two elsewhere."""
    job_ids = [j.pk for j in sent]
    event_ids = {j.event_id for j in sent if j.event_id}
    if connection.vendor == "postgresql" and event_ids:
        # One round trip and one commit on every publish. In a data-modifying WITH the outer
        # statement sees the rows as they were, hence "not one of the jobs just stamped".
        with connection.cursor() as cursor:
            cursor.execute(
                f"WITH stamped AS (UPDATE {_JOB} SET enqueued_at = %(now)s "  # noqa: S608 - the models' own table names
                "  WHERE id = ANY(%(jobs)s::uuid[]) RETURNING event_id) "
                f"UPDATE {_EVENT} AS e SET status = %(dispatched)s, dispatched_at = %(now)s "
                "WHERE e.id IN (SELECT event_id FROM stamped) AND e.status = %(pending)s "
                f"AND NOT EXISTS (SELECT 1 FROM {_JOB} AS j WHERE j.event_id = e.id "
                "  AND j.enqueued_at IS NULL AND NOT (j.id = ANY(%(jobs)s::uuid[])))",
                {"now": now, "jobs": [str(pk) for pk in job_ids],
                 "dispatched": EventStatus.DISPATCHED.value,
                 "pending": EventStatus.PENDING.value})
    else:
        Job.objects.filter(pk__in=job_ids).update(enqueued_at=now)
        if event_ids:
            unsent = Job.objects.filter(event_id=OuterRef("pk"), enqueued_at__isnull=True)
            Event.objects.filter(pk__in=event_ids, status=EventStatus.PENDING).exclude(
                Exists(unsent)).update(status=EventStatus.DISPATCHED, dispatched_at=now)
    # Keep the caller's objects true to the rows, so a 202 shows what was really done. The
    # publisher passes every job of its events: one of them not sent keeps its event pending.
    sent_ids = {j.pk for j in sent}
    held_back = {j.event_id for j in given if j.pk not in sent_ids}
    for job in sent:
        job.enqueued_at = now
        event = job.event if Job.event.is_cached(job) else None
        if event is not None and event.pk not in held_back and event.status == EventStatus.PENDING:
            event.status = EventStatus.DISPATCHED
            event.dispatched_at = now
