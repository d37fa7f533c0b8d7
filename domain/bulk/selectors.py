"""Reads for bulk runs. A key sees only the runs it started, unless it has the admin scope."""

from __future__ import annotations

from django.db.models import QuerySet

from domain.access.models import ApiKey
from domain.access.selectors import visible_to
from domain.bulk.models import BulkRun
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
