"""The bulk runs' metrics: rows processed by operation, counted as each chunk commits, so
`rate(conveyor_bulk_rows_total[1m])` is rows per second; and the runs not yet finished,
when scraped (README "Metrics")."""

from __future__ import annotations

from functools import partial

from django.db import transaction
from django.db.models import Count

from domain.bulk.models import HOLDING_STATUSES, BulkRun
from domain.bulk.registry import bulk_operations
from domain.common.gauges import Gauge, GaugeSet, GaugeValues
from domain.common.metrics import Counter

BULK_ROWS = Counter(
    "conveyor_bulk_rows_total",
    "Rows bulk runs went through (committed chunks), by operation; dry runs included.",
    ("operation",), initial=lambda: [(op.name,) for op in bulk_operations()])
BULK_ROWS_CHANGED = Counter(
    "conveyor_bulk_rows_changed_total",
    "Rows bulk runs changed (or, in a dry run, would change), by operation.",
    ("operation",), initial=lambda: [(op.name,) for op in bulk_operations()])


def count_chunk_on_commit(operation: str, rows: int, changed: int) -> None:
    """Count a chunk once it commits (with its checkpoint: a rolled-back chunk, retried
    smaller, is counted once, when it commits)."""
    transaction.on_commit(partial(_count, operation, rows, changed))


def _count(operation: str, rows: int, changed: int) -> None:
    BULK_ROWS.inc(operation, amount=rows)
    BULK_ROWS_CHANGED.inc(operation, amount=changed)


def runs_now() -> GaugeValues:
    """The runs not finished, by operation and status: a GROUP BY on the `bulkrun_status_
    created` index over a handful of rows (finished runs are never read)."""
    rows = (BulkRun.objects.filter(status__in=HOLDING_STATUSES)
            .values_list("operation", "status").annotate(n=Count("pk")).order_by())
    counted = {(operation, status): n for operation, status, n in rows}
    operations = sorted({op.name for op in bulk_operations()} | {op for op, _ in counted})
    return {"conveyor_bulk_runs": [[op, status.value, counted.get((op, status.value), 0)]
                                   for op in operations for status in HOLDING_STATUSES]}


RUNS_NOW = GaugeSet("bulk_runs", [
    Gauge("conveyor_bulk_runs", "Bulk runs not finished, by operation and status: queued, "
          "running, paused.", ("operation", "status")),
], runs_now, needs=("database",))
