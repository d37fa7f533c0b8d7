"""The job lifecycle's set-based statements: each PostgreSQL fast path beside the portable ORM
version it replaces, chosen by domain/common/fastpaths.on_postgresql().

The portable versions are for SQLite (local only). Tests hold each pair to the same result
(tests/domain/jobs/test_fastpaths.py), and CI runs the PostgreSQL side.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q

from domain.common.fastpaths import on_postgresql, table
from domain.jobs.hooks import hooks
from domain.jobs.models import RUNNABLE_JOB_STATUSES, AttemptOutcome, Job, JobAttempt, JobStatus
from domain.jobs.records import attempt_row

_RUNNABLE = [str(s) for s in RUNNABLE_JOB_STATUSES]


# --- Claim: runnable -> running, returning what was claimed ---------------------------------

def claim(job_ids: list[str], worker: str, now: datetime, lease_until: datetime) -> list[Job]:
    """Move the runnable, due jobs among `job_ids` to `running` under a lease held until
    `lease_until`; return them (any order)."""
    if on_postgresql():
        return _claim_pg(job_ids, worker, now, lease_until)
    return _claim_portable(job_ids, worker, now, lease_until)


def _claim_pg(job_ids: list[str], worker: str, now: datetime,
              lease_until: datetime) -> list[Job]:
    # One round trip: RETURNING gives exactly the rows this statement claimed, as they are
    # after it.
    return list(Job.objects.raw(
        f"UPDATE {table(Job)} SET status = %s, attempts = attempts + 1, "  # noqa: S608 - the model's own table name
        "started_at = %s, next_retry_at = NULL, worker = %s, lease_expires_at = %s "
        "WHERE id = ANY(%s::uuid[]) AND status = ANY(%s) "
        "AND (run_at IS NULL OR run_at <= %s) "
        "AND (next_retry_at IS NULL OR next_retry_at <= %s) RETURNING *",
        [JobStatus.RUNNING, now, worker, lease_until, [str(i) for i in job_ids], _RUNNABLE,
         now, now]))


def _claim_portable(job_ids: list[str], worker: str, now: datetime,
                    lease_until: datetime) -> list[Job]:
    # The transaction holds SQLite's write lock from BEGIN (IMMEDIATE), so nobody else can
    # claim between the UPDATE and the read of what it claimed.
    with transaction.atomic():
        Job.objects.filter(pk__in=job_ids, status__in=_RUNNABLE).filter(
            Q(run_at__isnull=True) | Q(run_at__lte=now)).filter(
            Q(next_retry_at__isnull=True) | Q(next_retry_at__lte=now)).update(
            status=JobStatus.RUNNING, attempts=F("attempts") + 1, started_at=now,
            next_retry_at=None, worker=worker, lease_expires_at=lease_until)
        return list(Job.objects.filter(pk__in=job_ids, status=JobStatus.RUNNING,
                                       started_at=now, worker=worker))


def claimed_by(jobs: list[Job]) -> Q:
    """Exactly the claims these jobs hold: still `running`, with the attempt (of the run) the
    claim made. The rescue requeues a job whose worker stopped renewing its lease; if that
    worker was only frozen (SIGSTOP, a long pause) and wakes while another worker runs the
    job again, whatever it then records (a success, a retry, a deferral) must change nothing:
    `status = running` alone would let it finish the other worker's claim, and the rescue
    would never look at that job again."""
    claims = Q(pk__in=[])
    for job in jobs:
        claims |= Q(pk=job.pk, attempts=job.attempts, replays=job.replays)
    return Q(status=JobStatus.RUNNING) & claims


# --- Success: running -> succeeded, with results and attempt rows ---------------------------

def succeed(outcomes: list[tuple[Job, Any]], now: datetime) -> set:
    """Store each job's result and an attempt row, for exactly the jobs still `running` (a job
    cancelled or rescued in the meantime gets neither). Returns the ids of the events closed
    in the same statement (PostgreSQL, the installed hooks' `succeeded_sql`)."""
    if on_postgresql():
        return _succeed_pg(outcomes, now, hooks().succeeded_sql)
    _succeed_portable(outcomes, now)
    return set()


def _succeed_pg(outcomes: list[tuple[Job, Any]], now: datetime, follow: str) -> set:
    # One statement, one commit: each job its own result (UPDATE … FROM unnest; Django's
    # bulk_update builds a CASE per row and is Python-bound: 2,500-3,000 rows/s against
    # 121,000 for unnest arrays, README "Performance"), and an attempt row for exactly the
    # jobs that statement moved.
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH v AS (SELECT unnest(%(ids)s::uuid[]) AS id, "  # noqa: S608 - the models' own table names
            "unnest(%(results)s::jsonb[]) AS result, unnest(%(attempts)s::int[]) AS attempts, "
            "unnest(%(replays)s::int[]) AS replays), "
            f"done AS (UPDATE {table(Job)} AS j SET status = %(succeeded)s, "
            "result = v.result, finished_at = %(now)s, error = NULL FROM v "
            # Only the claim that ran it (its attempt of its run): a worker that was taken
            # for dead and woke after the job was claimed again records nothing.
            "WHERE j.id = v.id AND j.status = %(running)s AND j.attempts = v.attempts "
            "AND j.replays = v.replays "
            "RETURNING j.id, j.event_id, j.replays, j.attempts, j.started_at, j.worker), "
            f"attempts AS (INSERT INTO {table(JobAttempt)} (job_id, run, number, started_at, "
            "finished_at, outcome, error_type, error_message, traceback, worker) "
            "SELECT id, replays, attempts, COALESCE(started_at, %(now)s), %(now)s, "
            "%(outcome)s, '', '', '', worker FROM done) "
            # The events' roll-up in the same statement (one commit where it was two: each
            # commit waits for the WAL to reach the disk, the largest cost of a job alone).
            + (follow or "SELECT NULL WHERE false"),
            {"ids": [str(job.pk) for job, _ in outcomes],
             "results": [None if r is None else json.dumps(r) for _, r in outcomes],
             "attempts": [job.attempts for job, _ in outcomes],
             "replays": [job.replays for job, _ in outcomes],
             "now": now, "succeeded": JobStatus.SUCCEEDED.value,
             "outcome": AttemptOutcome.SUCCEEDED.value, "running": JobStatus.RUNNING.value})
        return {row[0] for row in cursor.fetchall()}


def _succeed_portable(outcomes: list[tuple[Job, Any]], now: datetime) -> None:
    # One conditional UPDATE per job tells which were still running.
    with transaction.atomic():
        moved = [job for job, result in outcomes
                 if Job.objects.filter(claimed_by([job])).update(
                     status=JobStatus.SUCCEEDED, result=result, finished_at=now, error=None)]
        JobAttempt.objects.bulk_create(
            [attempt_row(job, AttemptOutcome.SUCCEEDED, now) for job in moved])


# --- Sent: stamp the hand-over to the broker (and let the events follow) ---------------------

def stamp_sent(sent: list[Job], now: datetime) -> bool:
    """Record `enqueued_at`. On PostgreSQL the installed hooks' `sent_sql` (the events'
    roll-up to `dispatched`) runs in the same statement: one round trip and one commit on
    every publish. Returns whether it did.

    Jobs without an event (a webhook fan-out's deliveries, by the thousand) take the same
    statement with nothing after the stamp: Django's `pk__in` UPDATE prepared each of 1,000
    ids through its field, 4% of a notifications worker's CPU (py-spy, bench webhooks)."""
    job_ids = [str(j.pk) for j in sent]
    if on_postgresql():
        follow = hooks().sent_sql if any(j.event_id for j in sent) else ""
        _stamp_pg(job_ids, now, follow or "SELECT NULL WHERE false")
        return bool(follow)
    _stamp_portable(job_ids, now)
    return False


def _stamp_pg(job_ids: list[str], now: datetime, follow: str) -> None:
    # SKIP LOCKED: a row locked now is being claimed or finished by a worker (its message is
    # out, so it was sent; a claimed job is not one the relay re-sends). Waiting for it instead
    # let this statement and a worker's, each holding some of a micro-batch's rows, wait for
    # each other: a deadlock, seen under load with 500-job batches. The claim still waits for
    # the stamp (domain/jobs/lifecycle.jobs_claim), so no cycle is left.
    jobs = table(Job)
    # The locked rows are a CTE joined by the UPDATE, not `WHERE id IN (SELECT … FOR UPDATE
    # SKIP LOCKED)`: in that form a row a worker changed meanwhile sends PostgreSQL's recheck
    # into the subquery again, and two such stamps spun at full CPU for minutes under load
    # while holding the rows every claim waited for (seen in the benchmark).
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH locked AS (SELECT id FROM {jobs} WHERE id = ANY(%(jobs)s::uuid[]) "  # noqa: S608 - the model's own table name; `follow` is code, not input
            "FOR UPDATE SKIP LOCKED), "
            f"stamped AS (UPDATE {jobs} AS s SET enqueued_at = %(now)s FROM locked "
            "WHERE s.id = locked.id RETURNING s.event_id) "
            f"{follow}",
            {"now": now, "jobs": job_ids})


def _stamp_portable(job_ids: list[str], now: datetime) -> None:
    Job.objects.filter(pk__in=job_ids).update(enqueued_at=now)
