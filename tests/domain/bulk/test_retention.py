"""Retention of bulk runs (domain/bulk/retention.py): runs finished before the cutoff go, their
input tables dropped first; a queued, running or paused run and its table stay whatever their
age; a failed run keeps its table (to be resumed) until it is old; a table with no run is
dropped; a running run whose job ended is settled before its job can be pruned."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from domain.bulk.inputs import input_table_name
from domain.bulk.models import BulkRun, BulkRunStatus
from domain.bulk.retention import INPUT_TABLES, bulk_runs_prune, bulk_runs_settle_ended
from domain.jobs.models import JobStatus
from domain.jobs.retention import jobs_prune
from tests.bulk_utils import input_tables
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db(transaction=True)

NOW = timezone.now()
CUTOFF = NOW - timedelta(days=90)
OLD = NOW - timedelta(days=120)


@pytest.fixture(autouse=True)
def _drop_input_tables():
    yield
    with connection.cursor() as cursor:
        for name in input_tables():
            cursor.execute(f"DROP TABLE {connection.ops.quote_name(name)}")


def make_table(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {connection.ops.quote_name(name)} "
                       "(line integer PRIMARY KEY, sku text)")
    return name


def run(status: str, *, at=OLD, csv: bool = True, **fields) -> BulkRun:
    made = BulkRun(operation="catalog.set_prices", status=status, chunk_size=10,
                   target_chunk_seconds=1, pause_seconds=0, lock_timeout_seconds=1,
                   created_at=at, updated_at=at, **fields)
    if status in (BulkRunStatus.SUCCEEDED, BulkRunStatus.FAILED, BulkRunStatus.CANCELLED):
        made.finished_at = at
    if csv:
        made.input_table = make_table(input_table_name(made))
    made.save(force_insert=True)
    return made


def test_old_finished_runs_go_with_their_tables_and_live_ones_stay_with_theirs():
    # given old runs in every status (the finished ones that still have a table: failed, and
    # a succeeded one whose table a crash left), and a recently failed one
    old = {s: run(s) for s in BulkRunStatus.values}
    no_csv = run(BulkRunStatus.CANCELLED, csv=False)
    recent_failure = run(BulkRunStatus.FAILED, at=NOW)

    # when the bulk runs are pruned with a 90-day cutoff
    report = bulk_runs_prune(cutoff=CUTOFF)

    # then the old finished runs are gone, and so are their tables
    finished = (BulkRunStatus.SUCCEEDED, BulkRunStatus.FAILED, BulkRunStatus.CANCELLED)
    assert not BulkRun.objects.filter(pk__in=[old[s].pk for s in finished] + [no_csv.pk]).exists()
    assert report.deleted == {"bulk_bulkrun": 4} and report.also == {INPUT_TABLES: 3}
    # and every queued, running or paused run stays with its table, as does the recent failure
    kept = [old[BulkRunStatus.QUEUED], old[BulkRunStatus.RUNNING], old[BulkRunStatus.PAUSED],
            recent_failure]
    assert BulkRun.objects.filter(pk__in=[r.pk for r in kept]).count() == 4
    assert input_tables() == sorted(r.input_table for r in kept)


def test_an_input_table_without_a_run_is_dropped():
    orphan = make_table(f"bulk_input_{uuid.uuid4().hex}")
    live = run(BulkRunStatus.PAUSED)

    report = bulk_runs_prune(cutoff=CUTOFF)

    assert orphan not in input_tables() and input_tables() == [live.input_table]
    assert report.also == {INPUT_TABLES: 1}


def test_a_running_run_whose_job_died_is_settled_before_its_job_is_pruned():
    # given a run still marked running whose job died long ago
    dead = JobFactory(status=JobStatus.DEAD, created_at=OLD, finished_at=OLD,
                      error={"type": "WorkerLost", "message": "gone"})
    stuck = run(BulkRunStatus.RUNNING, job=dead, target="catalog.product")

    # when the prune settles runs first, then prunes jobs
    assert bulk_runs_settle_ended(cutoff=CUTOFF).also == {"bulk runs settled": 1}
    jobs_prune(cutoff=CUTOFF)

    # then the run has failed (it no longer holds its rows), resumable with its table kept,
    # and points at no job
    stuck.refresh_from_db()
    assert stuck.status == BulkRunStatus.FAILED and stuck.job_id is None
    assert input_tables() == [stuck.input_table]
