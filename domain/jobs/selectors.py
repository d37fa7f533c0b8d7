"""Reads for jobs. A key sees only what it created, unless it has the admin scope."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Count, Min, Q, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Coalesce, Greatest, TruncMinute
from django.utils import timezone

from domain.access.models import ApiKey
from domain.access.selectors import visible_to
from domain.common.errors import NotFound
from domain.jobs.hooks import hooks
from domain.jobs.models import RUNNABLE_JOB_STATUSES, Job, JobAttempt, JobStatus, QueuePause
from domain.jobs.routing import kinds_on_queues


def job_get(*, job_id, api_key: ApiKey | None) -> Job:
    # Someone else's job is "not found", not "forbidden": ids must not leak.
    job = visible_to(Job.objects.all(), api_key).filter(pk=job_id).first()
    if job is None:
        raise NotFound("Job not found.")
    return job


def job_list(*, api_key: ApiKey | None, status: str | None = None, kind: str | None = None,
             event_id=None) -> QuerySet[Job]:
    jobs = visible_to(Job.objects.all(), api_key)
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)
    if event_id:
        jobs = jobs.filter(event_id=event_id)
    return jobs


def event_jobs(*, event_id) -> list[Job]:
    """An event's jobs in a stable order (creation, then handler name)."""
    return list(Job.objects.filter(event_id=event_id).order_by("created_at", "handler"))


def job_attempts(*, job: Job) -> list[JobAttempt]:
    """Every attempt, run by run: a replayed job's first run comes before its second, each
    run's attempts in order (attempt numbers restart at 1 with each replay)."""
    return list(job.attempt_log.order_by("run", "number"))


def jobs_matching_replay(*, api_key: ApiKey | None, status: str, kind: str | None = None,
                         event_type: str | None = None, error_type: str | None = None,
                         since: datetime | None = None,
                         until: datetime | None = None) -> QuerySet[Job]:
    """The jobs an operator's replay filter selects (time range on when they finished; the
    class name of their last error). Which jobs came from events of `event_type` is the events
    app's answer (domain/jobs/hooks.py)."""
    jobs = job_list(api_key=api_key, status=status, kind=kind)
    if event_type:
        jobs = hooks().jobs_of_event_type(jobs, event_type)
    if error_type:
        jobs = jobs.filter(error__type=error_type)
    if since:
        jobs = jobs.filter(finished_at__gte=since)
    if until:
        jobs = jobs.filter(finished_at__lt=until)
    return jobs


def _due(jobs: QuerySet[Job], now: datetime) -> QuerySet[Job]:
    """Runnable jobs whose time has come (no `run_at` ahead, no retry wait ahead)."""
    return (jobs.filter(status__in=RUNNABLE_JOB_STATUSES)
            .filter(Q(run_at__isnull=True) | Q(run_at__lte=now))
            .filter(Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=now)))


def jobs_waiting_by_kind(*, now: datetime | None = None,
                         kinds: Collection[str] | None = None) -> dict[str, dict]:
    """Per job kind (of `kinds`, or every kind): the jobs due and waiting for a worker (queued,
    or retrying with their retry due), and how long the oldest has been due. One aggregate
    over the runnable jobs (`job_status_created` index)."""
    now = now or timezone.now()
    due_since = Greatest("created_at", Coalesce("run_at", "created_at"),
                         Coalesce("next_retry_at", "created_at"))
    jobs = Job.objects.all() if kinds is None else Job.objects.filter(kind__in=list(kinds))
    rows = (_due(jobs, now)
            .values("kind").annotate(waiting=Count("id"), oldest=Min(due_since))
            .order_by("kind"))
    return {row["kind"]: {"waiting": row["waiting"],
                          "oldest_age_seconds": round(max(0.0, (now - row["oldest"])
                                                          .total_seconds()), 3)}
            for row in rows}


def jobs_sent_before(*, job: Job, kinds: Collection[str], now: datetime | None = None,
                     limit: int = 10_000) -> int:
    """How many due jobs of these kinds (a queue's) were handed to the broker before `job`
    and have not started: the jobs ahead of it in its queue, as far as the database knows
    (a queue is first in, first out; a worker may already hold some of them, prefetched).
    Counted up to `limit`, so a backlog of millions costs a bounded scan.

    One count per kind, each in `enqueued_at` order: that order is what makes PostgreSQL walk
    the partial index `job_waiting_kind_enqueued` (kind, enqueued_at) of the waiting jobs.
    Unordered, the LIMIT made a sequential scan of the whole table look cheaper (measured on
    3,000,000 jobs, 250,000 of a kind waiting: 445 ms for the job at the front, against
    1.6 ms through the index)."""
    if job.enqueued_at is None:
        return 0
    now = now or timezone.now()
    ahead = 0
    for kind in sorted(kinds):
        if ahead >= limit:
            break
        jobs = _due(Job.objects.filter(kind=kind, enqueued_at__lt=job.enqueued_at), now)
        ahead += jobs.order_by("enqueued_at")[:limit - ahead].count()
    return ahead


# --- Paused queues ----------------------------------------------------------------------------

def queue_pauses() -> dict[str, QueuePause]:
    """Every paused queue's row, by queue name (read from the database each time)."""
    return {pause.queue: pause for pause in QueuePause.objects.all()}


class _PausedQueues:
    """The names of the paused queues, read at most once per QUEUE_PAUSE_CACHE_SECONDS per
    process: the worker asks before every claim (workers/base.py), and one query per message
    for a table of a few rows would be a round trip added to every job. Forgotten at once in the
    process that pauses or resumes (domain/jobs/services.py); elsewhere a change is seen within
    that time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._names: frozenset[str] = frozenset()

    def forget(self) -> None:
        with self._lock:
            self._read_at = float("-inf")

    def names(self) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            if now - self._read_at >= settings.QUEUE_PAUSE_CACHE_SECONDS:
                self._names = frozenset(QueuePause.objects.values_list("queue", flat=True))
                self._read_at = now
            return self._names


paused_queues = _PausedQueues()


def queue_is_paused(name: str) -> bool:
    """Whether the queue is paused, as of at most QUEUE_PAUSE_CACHE_SECONDS ago in this
    process (see `_PausedQueues`). A database error propagates: the caller decides."""
    return name in paused_queues.names()


def jobs_waiting_on_queue(queue: str) -> int:
    """Jobs queued or retrying (due or not) of the kinds routed to `queue`: what a pause of
    the queue holds, or a resume lets go."""
    kinds = kinds_on_queues({queue})
    if not kinds:
        return 0
    return Job.objects.filter(status__in=RUNNABLE_JOB_STATUSES, kind__in=kinds).count()


# --- The operator dashboard's reads ---------------------------------------------------------

THROUGHPUT_STATUSES = (JobStatus.SUCCEEDED, JobStatus.DEAD)


@dataclass(frozen=True)
class Throughput:
    """Jobs finished per bucket and kind: `starts[i]` opens bucket i; `succeeded[kind][i]` and
    `dead[kind][i]` count the jobs of `kind` that ended so in it."""

    starts: list[datetime]
    bucket: timedelta
    succeeded: dict[str, list[int]]
    dead: dict[str, list[int]]

    def finished(self, kind: str) -> list[int]:
        zero = [0] * len(self.starts)
        return [a + b for a, b in zip(self.succeeded.get(kind, zero), self.dead.get(kind, zero),
                                      strict=True)]

    @property
    def kinds(self) -> list[str]:
        return sorted(set(self.succeeded) | set(self.dead))


def job_throughput(*, since: datetime, until: datetime, bucket: timedelta,
                   created_within: timedelta) -> Throughput:
    """Jobs that succeeded or died in [since, until), by kind, in buckets of `bucket` from
    `since`.

    `finished_at` has no index (every job writes it; an index would cost each finish a write
    for this one page), so the rows are reached through `job_status_created`: terminal status
    and created at most `created_within` before `until`. The cost is then that of the jobs
    created in that span, whatever the table's size; a job that finished longer than that
    after it was created (a replay of an old dead job, a run_at far ahead, hours of webhook
    retries) is not counted. One aggregate by minute, summed into buckets here.
    """
    rows = (Job.objects.filter(status__in=THROUGHPUT_STATUSES,
                               created_at__gte=until - created_within, created_at__lt=until,
                               finished_at__gte=since, finished_at__lt=until)
            .annotate(minute=TruncMinute("finished_at", tzinfo=UTC))
            .values("kind", "status", "minute").annotate(n=Count("id")).order_by())
    count = max(1, -(-int((until - since).total_seconds()) // int(bucket.total_seconds())))
    starts = [since + i * bucket for i in range(count)]
    by_status: dict[str, dict[str, list[int]]] = {str(s): {} for s in THROUGHPUT_STATUSES}
    for row in rows:
        index = min(count - 1, max(0, int((row["minute"] - since) / bucket)))
        series = by_status[row["status"]].setdefault(row["kind"], [0] * count)
        series[index] += row["n"]
    return Throughput(starts=starts, bucket=bucket, succeeded=by_status[JobStatus.SUCCEEDED],
                      dead=by_status[JobStatus.DEAD])


def dead_jobs_by_kind() -> dict[str, dict[str, int]]:
    """{kind: {error type: dead jobs}}, every dead job (the dead-letter store: retention
    prunes it). One aggregate over the `dead` range of `job_status_created`."""
    rows = (Job.objects.filter(status=JobStatus.DEAD)
            .values("kind", error_type=KT("error__type")).annotate(n=Count("id"))
            .order_by("kind", "error_type"))
    found: dict[str, dict[str, int]] = {}
    for row in rows:
        found.setdefault(row["kind"], {})[row["error_type"] or ""] = row["n"]
    return found
