"""Reads for bulk runs. A key sees only the runs it started, unless it has the admin scope."""

from __future__ import annotations

import math

from django.db.models import QuerySet

from domain.access.models import ApiKey
from domain.access.selectors import visible_to
from domain.bulk.models import BulkRun, BulkRunStatus
from domain.common.errors import NotFound


def bulk_run_get(*, run_id, api_key: ApiKey | None) -> BulkRun:
    # Someone else's run is "not found", not "forbidden": ids must not leak.
    run = (visible_to(BulkRun.objects.all(), api_key).select_related("job")
           .filter(pk=run_id).first())
    if run is None:
        raise NotFound("Bulk run not found.")
    return run


def bulk_run_list(*, api_key: ApiKey | None, status: str | None = None,
                  operation: str | None = None) -> QuerySet[BulkRun]:
    runs = visible_to(BulkRun.objects.all(), api_key).select_related("job")
    if status:
        runs = runs.filter(status=status)
    if operation:
        runs = runs.filter(operation=operation)
    return runs


def bulk_run_of_job(*, job_id) -> BulkRun | None:
    """The run this job carries now (None when it carries none, or the run has moved on to a
    newer job: a resume makes one)."""
    return BulkRun.objects.filter(job_id=job_id).first()


# --- Figures derived from a run's counters (the API, the admin and `bulk_update --wait`) ---

def bulk_run_rate(run: BulkRun) -> float | None:
    """Rows per second while running (the time between chunks included, time paused not)."""
    return round(run.rows_done / run.elapsed_seconds, 1) if run.elapsed_seconds > 0 else None


def bulk_run_chunks_total(run: BulkRun) -> int | None:
    """Chunks done plus those the rest needs at the current size: an estimate while it runs
    (sizes adapt), exact once it has succeeded."""
    if run.status == BulkRunStatus.SUCCEEDED:
        return run.chunks_done
    if run.rows_matched is None:
        return None
    remaining = max(run.rows_matched - run.rows_done, 0)
    return run.chunks_done + math.ceil(remaining / max(run.chunk_size, 1))


def bulk_run_eta(run: BulkRun) -> float | None:
    """Seconds left at the rate so far, while the run is queued or running."""
    rate = bulk_run_rate(run)
    if run.status not in (BulkRunStatus.QUEUED, BulkRunStatus.RUNNING) or not rate \
            or run.rows_matched is None:
        return None
    return round(max(run.rows_matched - run.rows_done, 0) / rate, 1)
