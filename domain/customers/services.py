"""Customer maintenance the scheduler starts."""

from __future__ import annotations

from django.conf import settings

from domain.bulk.models import BulkRun
from domain.bulk.services import bulk_run_start


def customers_deactivate_inactive(*, days: int | None = None,
                                  correlation_id: str = "") -> BulkRun:
    """Start the bulk run that deactivates customers inactive for `days`
    (CUSTOMERS_INACTIVE_DAYS). It runs like any bulk run: in chunks, pausable, one at a time
    on the customers (a second start while one holds them is 409 `bulk_target_busy`)."""
    return bulk_run_start(operation="customers.deactivate_inactive",
                          args={"days": days or settings.CUSTOMERS_INACTIVE_DAYS},
                          correlation_id=correlation_id)
