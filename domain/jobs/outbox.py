"""The outbox: the one place the domain talks to Celery, handing committed jobs to the broker,
and the relay that sends what was not handed over.

Jobs are written in the caller's transaction; the send happens after commit
(`transaction.on_commit`), so a worker never sees a job id that is not in the database. If the
broker is down the jobs stay `enqueued_at IS NULL` and the outbox relay sends them later.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import kombu.exceptions
import redis.exceptions
from celery import current_app
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from domain.common.correlation import MESSAGE_HEADER
from domain.jobs import fastpaths
from domain.jobs.hooks import hooks
from domain.jobs.metrics import OUTBOX_RELAYED, OUTBOX_UNSENT, count_jobs, tally_kinds
from domain.jobs.models import RUNNABLE_JOB_STATUSES, Job, JobStatus, QueueResume
from domain.jobs.registry import get_job_kind
from domain.jobs.routing import kinds_by_queue, kinds_on_queues
from domain.jobs.selectors import queue_pauses

logger = logging.getLogger(__name__)

BROKER_ERRORS = (
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,  # includes ConnectionError and socket timeouts
)


def outbox_enqueue_on_commit(jobs: Iterable[Job], *, count_as: str | None = None,
                             also: Callable[[], None] | None = None) -> None:
    """Hand the jobs to the broker once the caller's transaction commits: in the committing
    thread (OUTBOX_SEND=inline), or by this process's dispatcher thread (background, the
    default), so the request that committed them answers without waiting for the broker.
    `count_as`: the transition the commit made (created, replayed, rescued), counted then
    (domain/jobs/metrics.py); `also`: the caller's own after-commit work (its metrics), in
    the same call: one after-commit callback per publish."""
    jobs = list(jobs)
    if not jobs:
        if also is not None:
            transaction.on_commit(also)
        return
    inline = settings.OUTBOX_SEND == "inline"

    def after_commit() -> None:
        if count_as is not None:
            count_jobs(count_as, jobs)
        if also is not None:
            also()
        if inline:
            outbox_send(jobs)
        else:
            dispatcher.submit(jobs)

    transaction.on_commit(after_commit)


@dataclass(frozen=True, slots=True)
class _Handover:
    """What sending a job and stamping it need, and no more: the dispatcher keeps these, not
    the request's Job objects, which hold their events (payloads and all) and would keep a
    500-event batch's memory alive until the round is sent."""

    id: Any
    kind: str
    run_at: datetime | None
    correlation_id: str
    event_id: Any

    @property
    def pk(self) -> Any:
        return self.id

    @classmethod
    def of(cls, job: Job) -> _Handover:
        return cls(job.id, job.kind, job.run_at, job.correlation_id, job.event_id)


class OutboxDispatcher:
    """One thread per process that sends committed jobs to the broker for every request.

    Why not in the request: the send and the stamp that records it were 45% of a single
    publish's time (a Redis round trip through kombu, then an UPDATE and its commit). Here a
    request commits its event and jobs and answers; the thread takes whatever the process's
    requests committed since its last round (natural batching: the busier the process, the
    larger the round) and sends it over one producer connection, with `outbox_send`'s rules:
    jobs of a kind with `batch_size` > 1 share messages across requests (the micro-batching
    only the batch endpoint had), and one UPDATE stamps the whole round.

    What "accepted" means is unchanged: the 202 comes after the commit, and a committed job
    reaches the broker even if this thread never sends it (the process killed, the broker
    down): the outbox relay sends every job still `enqueued_at IS NULL` after
    OUTBOX_RELAY_GRACE_SECONDS. At a normal exit (gunicorn's max-requests recycling, SIGTERM,
    a management command ending) `flush` sends what is waiting first.

    Celery's own producer pool is not enough for this: it makes a send cheaper, not absent
    from the request, and cannot merge jobs of different requests into one message.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[list[_Handover] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._waiting = 0  # jobs queued for the thread and not yet sent

    def submit(self, jobs: list[Job]) -> None:
        """Queue the jobs for the thread, or, when it already has OUTBOX_DISPATCH_MAX_JOBS
        waiting, send them in the caller's thread: the process's requests then send side by
        side, as they would inline, and the backlog (memory, and the delay of every job
        behind it) stays bounded however fast requests commit."""
        self._ensure_running()
        with self._lock:
            backlog = self._waiting >= settings.OUTBOX_DISPATCH_MAX_JOBS
            if not backlog:
                self._waiting += len(jobs)
        if backlog:
            outbox_send(jobs)
            return
        self._queue.put([_Handover.of(job) for job in jobs])

    def _ensure_running(self) -> None:
        pid = os.getpid()
        if self._pid == pid and self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._pid == pid and self._thread is not None and self._thread.is_alive():
                return
            if self._pid != pid:  # a forked child: the parent's thread and queue stay behind
                self._queue = queue.SimpleQueue()
                self._waiting = 0
                atexit.register(self.flush)
            self._pid = pid
            self._thread = threading.Thread(target=self._run, name="outbox-dispatcher",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            stop = first is None
            round_: list[_Handover] = [] if first is None else list(first)
            while len(round_) < settings.OUTBOX_DISPATCH_MAX_JOBS:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                round_.extend(more)
            if round_:
                self._send(round_)
            if stop:
                return

    def _send(self, jobs: list[_Handover]) -> None:
        try:
            # Not the requests' objects (they may still be rendering them): nothing to update.
            outbox_send(jobs, update_objects=False)  # type: ignore[arg-type] - duck-typed Job
        except Exception:  # outbox_send logs its own failures; this thread must outlive any
            logger.exception("outbox dispatcher: sending %d jobs failed; the relay will send "
                             "them", len(jobs))
        finally:
            with self._lock:
                self._waiting -= len(jobs)
            connection = transaction.get_connection()
            connection.close_if_unusable_or_obsolete()

    def flush(self, timeout: float = 5.0) -> bool:
        """Send what is waiting and stop the thread (at exit). Returns whether it finished in
        time; what it did not send, the relay does."""
        thread = self._thread
        if thread is None or self._pid != os.getpid() or not thread.is_alive():
            return True
        self._queue.put(None)
        thread.join(timeout)
        return not thread.is_alive()


dispatcher = OutboxDispatcher()


def outbox_send(jobs: list[Job], *, max_batch: int | None = None,
                update_objects: bool = True) -> list[Job]:
    """Publish every due job over one producer connection; record what was handed over.

    Jobs of a kind with `batch_size` > 1 travel together: one message carries up to that many
    job ids (micro-batching: the worker claims and records them set-wise, see
    domain/jobs/lifecycle.py).
    A message carrying one job keeps the job id as its task id. `max_batch` caps the jobs per
    message below the kinds' own sizes (1: one message per job).

    `update_objects=False` leaves the Job (and Event) objects as they are, for a sender that
    does not own them (the dispatcher: the request that built them may still be rendering).

    Returns the jobs sent. A broker failure of any kind is logged, not raised: the rows are
    durable and the relay retries them. Called after commit, an exception here would turn the
    answer for committed events into a 500 and a client's retry into duplicates (DESIGN.md #7);
    so besides the errors a broker is known to raise, whatever else the client libraries throw
    while Redis misbehaves (reported under OOM: AttributeError from kombu's connection handling,
    redis' own OutOfMemoryError and ResponseError) leaves the unsent jobs `enqueued_at IS NULL`,
    logged once with its traceback.
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
                                      headers={MESSAGE_HEADER: job.correlation_id})
                    else:
                        # Each job keeps its own correlation id on its row; the message
                        # carries the first one for its log lines.
                        app.send_task(task_name, args=[[str(job.id) for job in chunk]],
                                      producer=producer,
                                      headers={MESSAGE_HEADER: chunk[0].correlation_id})
                    sent.extend(chunk)
        except BROKER_ERRORS as exc:
            logger.warning("outbox send failed sent=%d unsent=%d error=%r; the relay will retry",
                           len(sent), len(due) - len(sent), exc)
        except Exception:  # whatever it is: see the docstring, nothing here may fail the caller
            logger.exception("outbox send failed sent=%d unsent=%d with an unexpected error; "
                             "the relay will retry", len(sent), len(due) - len(sent))
        if len(sent) < len(due):
            sent_ids = {job.pk for job in sent}
            tally_kinds(OUTBOX_UNSENT, (job for job in due if job.pk not in sent_ids))
    if sent:
        try:
            _mark_sent(sent, jobs, now, update_objects=update_objects)
        except DatabaseError:
            if transaction.get_connection().in_atomic_block:
                raise  # the relay's transaction: it rolls back and the jobs are found again
            # After the publish's commit the database went away: the jobs are on the broker
            # but not stamped, so the relay sends them again (the claim refuses the second
            # message) and the events say `pending` until then, as the answer does.
            logger.warning("outbox sent=%d but could not record it; the relay will send them "
                           "again", len(sent), exc_info=True)
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


def _mark_sent(sent: list[Job], given: list[Job], now: datetime, *,
               update_objects: bool = True) -> None:
    """Stamp the jobs as handed over; their events follow through the installed hooks (in the
    same statement on PostgreSQL, domain/jobs/fastpaths.py)."""
    in_statement = fastpaths.stamp_sent(sent, now)
    if update_objects:
        for job in sent:
            job.enqueued_at = now
    hooks().jobs_sent(sent=sent, given=given, now=now, in_statement=in_statement,
                      objects=update_objects)


def outbox_relay(*, batch_size: int | None = None, grace_seconds: int | None = None,
                 stale_seconds: int | None = None) -> int:
    """Send jobs that were committed but never reached the broker, are due again, or whose
    message was lost: queued, handed over long ago, never started (OUTBOX_STALE_SECONDS), or
    sooner (OUTBOX_LOST_SECONDS) when the job's queue holds no message at all, which only
    happens when messages vanished (an evicting Redis, a restart without persistence). A
    re-sent duplicate is harmless: the claim lets one run through.

    Rows are locked with SKIP LOCKED inside the transaction that sends them, so two relays
    running at once never pick the same job.

    Jobs of a paused queue's kinds (domain/jobs/models.QueuePause) are neither sent nor taken
    for lost: they wait in the database, and the first relay after the resume sends them. A
    job handed over before or during a pause waited, it was not lost: its hand-over counts
    from the queue's resume (`QueueResume`), if that is later.
    """
    batch_size = batch_size or settings.OUTBOX_RELAY_BATCH_SIZE
    grace = timedelta(seconds=settings.OUTBOX_RELAY_GRACE_SECONDS
                      if grace_seconds is None else grace_seconds)
    stale = timedelta(seconds=settings.OUTBOX_STALE_SECONDS
                      if stale_seconds is None else stale_seconds)
    lost_after = timedelta(seconds=settings.OUTBOX_LOST_SECONDS)
    paused = set(queue_pauses())
    held = kinds_on_queues(paused)
    resumed = dict(QueueResume.objects.filter(resumed_at__gt=timezone.now() - stale)
                   .values_list("queue", "resumed_at"))
    # A job's hand-over counts from its queue's resume, if later: one resumed less than
    # `stale` ago has no stale job yet, one resumed less than `lost_after` ago no lost one.
    fresh = kinds_on_queues(set(resumed))
    vanished = _kinds_on_empty_queues(paused) - kinds_on_queues(
        {queue for queue, at in resumed.items() if at > timezone.now() - lost_after})
    total = 0
    while True:
        now = timezone.now()
        never_sent = Q(enqueued_at__isnull=True, created_at__lte=now - grace)
        lost = Q(status=JobStatus.QUEUED, enqueued_at__lt=now - stale)
        if fresh:
            lost &= ~Q(kind__in=fresh)
        if vanished:
            lost |= Q(status=JobStatus.QUEUED, kind__in=vanished,
                      enqueued_at__lt=now - lost_after)
        with transaction.atomic():
            due = list(
                Job.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(status__in=RUNNABLE_JOB_STATUSES)
                .filter(never_sent | lost)
                .filter(Q(run_at__isnull=True) | Q(run_at__lte=now))
                .filter(Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=now))
                .exclude(kind__in=held)
                .order_by("created_at")[:batch_size]
            )
            if not due:
                break
            sent = outbox_send(due)
        tally_kinds(OUTBOX_RELAYED, sent)  # (after the commit: the send is done either way)
        total += len(sent)
        if len(sent) < len(due) or len(due) < batch_size:
            break
    if total:
        logger.info("outbox relay sent=%d", total)
    return total


def outbox_relay_due_at(job: Job) -> datetime:
    """When the relay's query first finds a job it has to send itself (`enqueued_at IS NULL`):
    once it is past OUTBOX_RELAY_GRACE_SECONDS since it was made, and due (`run_at`, a retry's
    `next_retry_at`). The relay sends it at its first run after that (Beat runs it every few
    seconds). Kept beside `outbox_relay` so that the two say the same."""
    due = [job.created_at + timedelta(seconds=settings.OUTBOX_RELAY_GRACE_SECONDS)]
    due += [at for at in (job.run_at, job.next_retry_at) if at is not None]
    return max(due)


def _kinds_on_empty_queues(paused: set[str]) -> set[str]:
    """The job kinds whose queue holds no message now (one LLEN per queue). Nothing when the
    broker cannot be asked: the relay's sends would fail then anyway. A paused queue is not
    asked: its jobs are held, not lost."""
    app = current_app
    by_queue = {queue: kinds for queue, kinds in kinds_by_queue().items()
                if queue not in paused}
    try:
        with app.connection_for_read() as conn:
            client = conn.default_channel.client  # kombu applies the key prefix itself
            empty = [queue for queue in by_queue if client.llen(queue) == 0]
    except (*BROKER_ERRORS, AttributeError, redis.exceptions.RedisError) as exc:
        logger.warning("relay: queue lengths unknown error=%r", exc)
        return set()
    return {kind for queue in empty for kind in by_queue[queue]}
