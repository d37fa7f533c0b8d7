"""The jobs' metrics: every status change counted where the lifecycle makes it, and the current
counts computed when scraped (README "Metrics").

**Why the current counts are cheap.** The jobs table holds millions of rows (10M is the size
this is built for), nearly all of them `succeeded` or `cancelled`, kept RETENTION_JOBS_DAYS.
No scrape counts those: one GROUP BY reads only the rows of the statuses an operator acts on
(queued, running, retrying and dead), through the `job_status_created` index, whose leading
column is the status; their number is the backlog plus the dead letters kept by retention,
not the table. The answer is cached in Redis for METRICS_GAUGE_CACHE_SECONDS (one query per
period whatever the number of scrapers), and the statement may run for at most
GAUGE_QUERY_TIMEOUT on PostgreSQL: a huge backlog makes the gauges go missing for a scrape
(`conveyor_metrics_source_up{source="jobs"} 0`), never a slow database.

Terminal totals come from the transition counters instead (`increase(...{transition=
"succeeded"}[1h])`, and so on), and the table's size from PostgreSQL's own estimate
(`pg_class.reltuples`, kept by ANALYZE and autovacuum): no exact count of a 10M-row table.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from functools import partial

from django.db import connection, transaction
from django.db.models import Count, Min, Q
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from domain.common.fastpaths import on_postgresql
from domain.common.gauges import Gauge, GaugeSet, GaugeValues
from domain.common.metrics import Counter
from domain.jobs.models import RUNNABLE_JOB_STATUSES, Job, JobStatus
from domain.jobs.registry import job_kinds

# What a job went through (a status change, or a message that changed nothing in its run).
CREATED = "created"  # committed (published with an event, triggered, or made by a domain app)
CLAIMED = "claimed"  # a worker started an attempt
SUCCEEDED = "succeeded"
RETRYING = "retrying"  # an attempt failed, another follows (its wait on the broker or parked)
DEAD = "dead"  # out of attempts, a permanent error, or its worker lost on its last attempt
CANCELLED = "cancelled"
REPLAYED = "replayed"  # an operator ran a dead or cancelled job again
RESCUED = "rescued"  # its worker died; the orphan rescue queued it again
DEFERRED = "deferred"  # claimed, then told to wait (a rate limit, a circuit, a bulk slice)
RELEASED = "released"  # claimed but never run (a micro-batch cut short by its time limit)
TRANSITIONS = (CREATED, CLAIMED, SUCCEEDED, RETRYING, DEAD, CANCELLED, REPLAYED, RESCUED,
               DEFERRED, RELEASED)

JOB_TRANSITIONS = Counter(
    "conveyor_job_transitions_total",
    "Jobs that went through a transition, by job kind: created, claimed, succeeded, retrying "
    "(retries), dead, cancelled, replayed, rescued, deferred, released.",
    ("kind", "transition"),
    initial=lambda: [(kind.name, t) for kind in job_kinds() for t in TRANSITIONS])
OUTBOX_RELAYED = Counter(
    "conveyor_outbox_relayed_total",
    "Jobs the outbox relay handed to the broker: not sent at their commit (the broker was "
    "down), due again, or whose message was lost.",
    ("kind",))
OUTBOX_UNSENT = Counter(
    "conveyor_outbox_unsent_total",
    "Jobs whose hand-over to the broker failed (left to the relay).", ("kind",))
ORPHANS_RESCUED = Counter(
    "conveyor_orphans_rescued_total",
    "Running jobs whose worker stopped renewing their lease, by what the rescue did: "
    "requeued, or dead (it was their last attempt).",
    ("kind", "outcome"))


def count_jobs(transition: str, jobs: Iterable[Job]) -> None:
    """Count the jobs' transition now, by kind."""
    for kind, n in Tally(job.kind for job in jobs).items():
        JOB_TRANSITIONS.inc(kind, transition, amount=n)


def tally_kinds(counter: Counter, jobs: Iterable[Job]) -> None:
    """Count jobs now on a counter labelled by kind alone."""
    for kind, n in Tally(job.kind for job in jobs).items():
        counter.inc(kind, amount=n)


def count_rescue(requeued: list[Job], dead: list[Job]) -> None:
    """The orphan rescue's outcome (the requeued ones' `rescued` transition is counted with
    their hand-over to the broker)."""
    count_jobs(DEAD, dead)
    for outcome, jobs in (("requeued", requeued), ("dead", dead)):
        for kind, n in Tally(job.kind for job in jobs).items():
            ORPHANS_RESCUED.inc(kind, outcome, amount=n)


def count_jobs_on_commit(transition: str, jobs: Iterable[Job]) -> None:
    """Count it once the caller's transaction commits (now, outside one): a rolled-back
    change is never counted."""
    kinds = Tally(job.kind for job in jobs)
    if kinds:
        transaction.on_commit(partial(_count_kinds, transition, kinds))


def _count_kinds(transition: str, kinds: Tally) -> None:
    for kind, n in kinds.items():
        JOB_TRANSITIONS.inc(kind, transition, amount=n)


def count_kind_on_commit(transition: str, kind: str, n: int = 1) -> None:
    if n:
        transaction.on_commit(partial(JOB_TRANSITIONS.inc, kind, transition, amount=n))


# --- Gauges ------------------------------------------------------------------------------------

# The statuses counted at every scrape: the work still to do, and the dead letters.
COUNTED_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING, JobStatus.DEAD)
GAUGE_QUERY_TIMEOUT_MS = 2000


def _due(now) -> Q:
    return (Q(status__in=RUNNABLE_JOB_STATUSES)
            & (Q(run_at__isnull=True) | Q(run_at__lte=now))
            & (Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=now)))


def jobs_now_query(now):
    """The one aggregate a scrape runs (see the module docstring): per kind and status, how
    many, and of the due ones (queued or retrying, their run_at and retry wait passed) how
    many and since when the oldest has been due."""
    due = _due(now)
    due_since = Greatest("created_at", Coalesce("run_at", "created_at"),
                         Coalesce("next_retry_at", "created_at"))
    return (Job.objects.filter(status__in=COUNTED_STATUSES).values("kind", "status")
            .annotate(n=Count("pk"), waiting=Count("pk", filter=due),
                      oldest=Min(due_since, filter=due))
            .order_by())


def _rows_estimate() -> float | None:
    if not on_postgresql():
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
                       [Job._meta.db_table])
        row = cursor.fetchone()
    return None if row is None or row[0] < 0 else float(row[0])  # -1: never analyzed


def jobs_now() -> GaugeValues:
    now = timezone.now()
    ours = not connection.in_atomic_block  # (a caller's transaction keeps its own timeout)
    with transaction.atomic():
        if ours and on_postgresql():
            with connection.cursor() as cursor:  # SET LOCAL: this transaction only
                cursor.execute(f"SET LOCAL statement_timeout = {GAUGE_QUERY_TIMEOUT_MS}")
        rows = list(jobs_now_query(now))
        estimate = _rows_estimate()
    waiting: Tally = Tally()
    oldest: dict[str, float] = {}
    for row in rows:
        waiting[row["kind"]] += row["waiting"]
        if row["oldest"] is not None:
            age = max(0.0, (now - row["oldest"]).total_seconds())
            oldest[row["kind"]] = max(age, oldest.get(row["kind"], 0.0))
    kinds = {k.name for k in job_kinds()} | {row["kind"] for row in rows}
    counted = {(row["kind"], row["status"]): row["n"] for row in rows}
    values: GaugeValues = {
        "conveyor_jobs": [[kind, status, counted.get((kind, status), 0)]
                          for kind in sorted(kinds) for status in COUNTED_STATUSES],
        "conveyor_jobs_waiting": [[kind, waiting[kind]] for kind in sorted(kinds)],
        "conveyor_jobs_oldest_waiting_age_seconds": [[kind, round(oldest.get(kind, 0.0), 3)]
                                                     for kind in sorted(kinds)],
    }
    if estimate is not None:
        values["conveyor_jobs_table_rows_estimate"] = [[estimate]]
    return values


JOBS_NOW = GaugeSet("jobs", [
    Gauge("conveyor_jobs", "Jobs now, by kind and status: queued, running, retrying, and dead "
          "(the dead letters, until replayed or pruned). Terminal totals: the transition "
          "counters.", ("kind", "status")),
    Gauge("conveyor_jobs_waiting", "Jobs due and waiting for a worker (queued, or retrying "
          "with their wait over), by kind.", ("kind",)),
    Gauge("conveyor_jobs_oldest_waiting_age_seconds", "How long the oldest due job of a kind "
          "has waited for a worker (0: none waiting).", ("kind",)),
    Gauge("conveyor_jobs_table_rows_estimate", "PostgreSQL's estimate of the jobs table's "
          "rows, every status (pg_class.reltuples; no exact count is taken)."),
], jobs_now, needs=("database",))
