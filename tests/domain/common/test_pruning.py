"""Batched pruning by primary-key ranges (domain/common/pruning.py): the predicate decides,
children go with their parents in the same batch, references are set to NULL, batches are
bounded and each its own transaction, a run stopped by its deadline resumes where it stopped
(and wraps around), and foreign keys nobody declared are refused. Runs on PostgreSQL and on
SQLite (UUID keys stored as 32 hex digits there)."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connection, connections
from django.db.models import Q
from django.utils import timezone

from domain.bulk.models import BulkRun
from domain.common import pruning
from domain.common.pruning import Child, prune_table
from domain.events.models import Event
from domain.jobs.models import Job, JobAttempt, JobStatus
from tests.factories import EventFactory, JobFactory

pytestmark = pytest.mark.django_db(transaction=True)

OLD = timezone.now() - timedelta(days=60)
DONE = Q(status=JobStatus.SUCCEEDED)
ATTEMPTS = (Child(JobAttempt, "job"),)


def key(n: int) -> uuid.UUID:
    """The n-th key in the walk's order (on PostgreSQL and, as hex text, on SQLite)."""
    return uuid.UUID(int=n)


def job(n: int, status: str = JobStatus.SUCCEEDED, attempts: int = 2, **fields) -> Job:
    made = JobFactory(id=key(n), status=status, created_at=OLD, finished_at=OLD, **fields)
    for number in range(1, attempts + 1):
        JobAttempt.objects.create(job=made, number=number, started_at=OLD, finished_at=OLD,
                                  outcome="succeeded")
    return made


class Statements:
    """Every statement the pruner sends, with the rows it touched."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []
        self.walk_params: list[list] = []
        self.fail_at: int | None = None  # raise on this parent DELETE (1-based)

    def __call__(self, execute, sql, params, many, context):
        if sql.startswith('DELETE FROM "events_job"') and self.fail_at is not None \
                and len(self.deletes("events_job")) + 1 == self.fail_at:
            raise DatabaseError("injected failure")
        result = execute(sql, params, many, context)
        self.seen.append((sql, context["cursor"].rowcount))
        if sql.startswith("SELECT") and "OFFSET" in sql:
            self.walk_params.append(list(params))
        return result

    def deletes(self, table: str) -> list[int]:
        head = f'DELETE FROM "{table}"'  # noqa: S608 - a prefix to compare, not a query
        return [rows for sql, rows in self.seen if sql.startswith(head)]

    def walks(self) -> list[str]:
        return [sql for sql, _ in self.seen if sql.startswith("SELECT") and "OFFSET" in sql]


class Clock:
    """A clock that moves one second per reading. The pruner reads it once as it starts and
    once before each batch, so with a deadline of now + n + 2 it does n batches (readings
    now + 2 to now + n + 1) and stops at the next reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def test_matching_rows_go_with_their_children_in_bounded_batches():
    # given 12 old succeeded jobs and 5 running ones among them, two attempts each
    running = {3, 7, 8, 11, 16}
    for n in range(1, 18):
        job(n, JobStatus.RUNNING if n in running else JobStatus.SUCCEEDED)

    # when they are pruned 4 keys a batch, every statement recorded
    statements = Statements()
    with connection.execute_wrapper(statements):
        report = prune_table(model=Job, where=DONE, children=ATTEMPTS, batch_size=4, pause=0)

    # then only the running jobs are left, each with both its attempts
    assert set(Job.objects.values_list("pk", flat=True)) == {key(n) for n in running}
    assert JobAttempt.objects.count() == 2 * len(running)
    assert not JobAttempt.objects.exclude(job__in=Job.objects.all()).exists()
    assert report.deleted == {"events_job": 12, "events_jobattempt": 24}
    # and 17 keys were walked in 5 batches of at most 4: no statement touched more
    assert report.batches == 5 and report.complete
    assert len(statements.walks()) == 5
    assert all(rows <= 4 for rows in statements.deletes("events_job"))
    assert all(rows <= 8 for rows in statements.deletes("events_jobattempt"))
    assert sum(statements.deletes("events_job")) == 12


def test_a_reference_declared_set_null_is_cleared_and_its_row_kept():
    # given a bulk run whose job is pruned (BulkRun.job is SET_NULL)
    pruned = job(1)
    run = BulkRun.objects.create(operation="catalog.reprice", chunk_size=10,
                                 target_chunk_seconds=1, pause_seconds=0,
                                 lock_timeout_seconds=1, job=pruned, status="succeeded")

    # when the jobs are pruned
    report = prune_table(model=Job, where=DONE, children=ATTEMPTS, pause=0)

    # then the run stays, pointing at no job
    run.refresh_from_db()
    assert run.job_id is None and not Job.objects.exists()
    assert report.nulled == {"bulk_bulkrun.job_id": 1}


def test_a_row_still_referenced_through_a_kept_foreign_key_stays():
    # given two old events, one with a job left
    kept, gone = EventFactory(created_at=OLD), EventFactory(created_at=OLD)
    JobFactory(event=kept, status=JobStatus.QUEUED)

    # when events are pruned, the jobs' foreign key named as one that keeps them
    prune_table(model=Event, where=Q(created_at__lt=timezone.now()), pause=0,
                keep_if_referenced=(Job._meta.get_field("event"),))

    # then only the event without a job went
    assert list(Event.objects.values_list("pk", flat=True)) == [kept.pk]
    assert Event.objects.filter(pk=gone.pk).count() == 0


def test_a_foreign_key_nobody_declared_is_refused_before_anything_is_deleted():
    job(1)
    with pytest.raises(ImproperlyConfigured, match=r"JobAttempt\.job"):
        prune_table(model=Job, where=DONE)
    with pytest.raises(ImproperlyConfigured, match=r"jobs\.Job\.event"):
        prune_table(model=Event, where=Q())
    assert Job.objects.count() == 1 and JobAttempt.objects.count() == 2


def test_a_run_stopped_by_its_deadline_resumes_after_its_checkpoint_and_wraps_around():
    # given 10 old succeeded jobs
    for n in range(10, 20):
        job(n)

    # when a run may do two batches of 3 keys before its deadline
    clock = Clock()
    first = prune_table(model=Job, where=DONE, children=ATTEMPTS, batch_size=3, pause=0,
                        clock=clock, deadline=clock.now + 2 + 2)

    # then it stopped cleanly after them: 6 jobs gone with their attempts, the rest still there
    assert (first.batches, first.complete, first.deleted["events_job"]) == (2, False, 6)
    assert set(Job.objects.values_list("pk", flat=True)) == {key(n) for n in range(16, 20)}
    assert JobAttempt.objects.count() == 8

    # and when a job appears before the checkpoint, and the next run has time
    job(1)
    statements = Statements()
    with connection.execute_wrapper(statements):
        second = prune_table(model=Job, where=DONE, children=ATTEMPTS, batch_size=3, pause=0)

    # then it started after the checkpoint, reached the end, wrapped round to the first key
    # and stopped where it had started: everything is gone
    assert second.complete and not Job.objects.exists() and not JobAttempt.objects.exists()
    assert second.deleted == {"events_job": 5, "events_jobattempt": 10}
    assert str(statements.walk_params[0][0]).replace("-", "") == key(15).hex
    # and the checkpoint is cleared: a third run walks from the first key
    assert pruning._checkpoint_get("events_job") is None


def test_each_batch_is_its_own_transaction():
    # given 9 old jobs and a failure in the third batch's DELETE
    for n in range(1, 10):
        job(n)
    statements = Statements()
    statements.fail_at = 3

    # when the prune runs 3 keys a batch
    with connection.execute_wrapper(statements), pytest.raises(DatabaseError):
        prune_table(model=Job, where=DONE, children=ATTEMPTS, batch_size=3, pause=0)

    # then the first two batches are committed, the third rolled back whole
    assert set(Job.objects.values_list("pk", flat=True)) == {key(n) for n in range(7, 10)}
    assert JobAttempt.objects.count() == 6
    # and the next run resumes after the last committed batch
    report = prune_table(model=Job, where=DONE, children=ATTEMPTS, batch_size=3, pause=0)
    assert report.deleted["events_job"] == 3 and not Job.objects.exists()


def test_nothing_matches_an_empty_condition_and_nothing_is_walked():
    job(1)
    report = prune_table(model=Job, where=Q(pk__in=[]), children=ATTEMPTS, pause=0)
    assert report.complete and report.batches == 0 and Job.objects.count() == 1


def test_keys_are_walked_in_the_databases_own_representation():
    # given jobs whose keys sort differently as text with dashes and as numbers
    keys = [uuid.UUID("0fffffff-ffff-ffff-ffff-ffffffffffff"), uuid.UUID(int=2**127),
            uuid.UUID("00000000-0000-0000-0000-00000000000a"), uuid.uuid4(), uuid.uuid4()]
    for k in keys:
        JobFactory(id=k, status=JobStatus.SUCCEEDED, created_at=OLD, finished_at=OLD)
    with connection.cursor() as cursor:
        cursor.execute('SELECT id FROM "events_job" ORDER BY id')
        stored = [row[0] for row in cursor.fetchall()]

    # then SQLite holds them as 32 hex digits (no dashes), PostgreSQL as uuid, both in the
    # UUIDs' own order
    if connection.vendor == "sqlite":
        assert stored == sorted(k.hex for k in keys)
    else:
        assert stored == sorted(keys)
    # and a walk of 2 keys a batch deletes every one of them
    report = prune_table(model=Job, where=DONE, children=ATTEMPTS, batch_size=2, pause=0)
    assert report.deleted["events_job"] == 5 and report.batches == 3


@pytest.mark.postgres
def test_every_foreign_key_into_a_pruned_table_is_checked_at_commit():
    # the parent's DELETE runs before its children's: this holds only with deferred checks
    with connection.cursor() as cursor:
        cursor.execute("""
            SELECT conname, confrelid::regclass::text, condeferrable, condeferred
            FROM pg_constraint WHERE contype = 'f' AND confrelid::regclass::text = ANY(%s)""",
                       [["events_job", "events_event", "notifications_delivery",
                         "notifications_message", "notifications_notification",
                         "notifications_digest", "bulk_bulkrun"]])
        found = cursor.fetchall()
    assert found and all(deferrable and deferred for _, _, deferrable, deferred in found), found


@pytest.mark.postgres
def test_a_row_locked_by_another_transaction_stops_the_run_without_waiting_long(monkeypatch):
    # given an old job another transaction holds locked
    for n in range(1, 7):
        job(n)
    monkeypatch.setattr(pruning, "LOCK_TIMEOUT", "200ms")
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        other = connections.create_connection("default")
        try:
            other.set_autocommit(False)
            with other.cursor() as cursor:
                cursor.execute('SELECT 1 FROM "events_job" WHERE id = %s FOR UPDATE', [key(5)])
                locked.set()
                release.wait(30)
            other.rollback()
        finally:
            other.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        # when a prune meets it in its second batch
        report = prune_table(model=Job, where=DONE, children=ATTEMPTS, batch_size=3, pause=0)
    finally:
        release.set()
        holder.join(10)

    # then it stopped after the first batch, and the next run finishes the work
    assert not report.complete and report.deleted["events_job"] == 3
    assert prune_table(model=Job, where=DONE, children=ATTEMPTS, batch_size=3,
                       pause=0).complete
    assert not Job.objects.exists()
