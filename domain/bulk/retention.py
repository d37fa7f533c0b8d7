"""Retention of bulk runs and their CSV input tables.

A run is pruned once it has finished (succeeded, failed or cancelled) before the cutoff. Its
input table (`bulk_input_<run id>`, domain/bulk/inputs.py) is dropped first, in the run row's
own transaction under its row lock: a failed run keeps its input to be resumed, until then. A
queued, running or paused run, and its input table, are never touched, whatever their age.
An input table whose run no longer exists at all (a run deleted by hand) is dropped too.

The runs' jobs are pruned by domain/jobs/retention.py, which sets `BulkRun.job` to NULL (the
foreign key is SET_NULL). A queued or running run whose job has ended is settled first
(`bulk_run_settle`, as any read of the run would): with its job gone it could no longer be,
and would hold its rows for ever.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Q

from domain.bulk import inputs
from domain.bulk.models import FINISHED_STATUSES, BulkRun, BulkRunStatus
from domain.bulk.services import bulk_run_settle
from domain.common.pruning import PruneReport, prune_table
from domain.jobs.models import Job
from domain.jobs.retention import prunable_jobs

logger = logging.getLogger(__name__)

INPUT_TABLES = f"{inputs.INPUT_TABLE_PREFIX}* tables dropped"


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def bulk_runs_settle_ended(*, cutoff: datetime, deadline: float | None = None) -> PruneReport:
    """Settle the queued or running runs whose job the jobs' prune would delete (ended before
    `cutoff`). Runs before that prune; answers a report with the runs settled."""
    started, settled = time.monotonic(), 0
    ended = BulkRun.objects.select_related("job").filter(
        status__in=(BulkRunStatus.QUEUED, BulkRunStatus.RUNNING),
        job__in=Job.objects.filter(prunable_jobs(cutoff=cutoff)))
    for run in ended.iterator():
        if _past(deadline):
            break
        before = run.status
        settled += bulk_run_settle(run=run).status != before
    return PruneReport(table=BulkRun._meta.db_table, also={"bulk runs settled": settled},
                       complete=not _past(deadline), seconds=time.monotonic() - started)


def finished_before(cutoff: datetime) -> Q:
    return Q(status__in=FINISHED_STATUSES) & (
        Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, updated_at__lt=cutoff))


def bulk_runs_prune(*, cutoff: datetime, deadline: float | None = None) -> PruneReport:
    """Drop the input tables of runs finished before `cutoff` (and of runs that no longer
    exist), then delete those runs in batches. A run whose table could not be dropped in
    this run's time stays, with its table, for the next."""
    dropped = _drop_input_tables(cutoff, deadline) + _drop_orphan_input_tables(deadline)
    report = prune_table(model=BulkRun, where=finished_before(cutoff) & Q(input_table=""),
                         deadline=deadline)
    report.also[INPUT_TABLES] = dropped
    return report


def _drop_input_tables(cutoff: datetime, deadline: float | None) -> int:
    dropped = 0
    candidates = (BulkRun.objects.filter(finished_before(cutoff)).exclude(input_table="")
                  .values_list("pk", flat=True))
    for pk in candidates.iterator():
        if _past(deadline):
            break
        with transaction.atomic():
            # Judged again under the run's lock: a failed run resumed meanwhile keeps it.
            run = BulkRun.objects.select_for_update().filter(
                finished_before(cutoff), pk=pk).exclude(input_table="").first()
            if run is None:
                continue
            inputs.input_drop(run)
            run.save(update_fields=["input_table"])
            dropped += 1
    return dropped


def _drop_orphan_input_tables(deadline: float | None) -> int:
    """Input tables whose run does not exist. A run and its table are created in one
    transaction, so a table anyone can see has its run committed beside it."""
    tables = {t for t in connection.introspection.table_names()
              if t.startswith(inputs.INPUT_TABLE_PREFIX)}
    known = set(BulkRun.objects.filter(input_table__in=tables)
                .values_list("input_table", flat=True))
    dropped = 0
    for name in sorted(tables - known):
        if _past(deadline):
            break
        with transaction.atomic():
            if BulkRun.objects.filter(input_table=name).exists():
                continue
            inputs.input_drop(BulkRun(input_table=name))
            logger.warning("dropped the input table of a run that no longer exists table=%s",
                           name)
            dropped += 1
    return dropped
