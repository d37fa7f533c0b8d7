"""The periodic tasks, each through the ledger: what they return is what the ledger keeps."""

from __future__ import annotations

import datetime as dt

import pytest

from domain.bulk.models import BulkRun
from scheduler.ledger import slot_headers
from scheduler.models import RunOutcome, ScheduleRun, SkipReason
from tasks.maintenance import deactivate_inactive_customers, queue_health

pytestmark = pytest.mark.django_db

NIGHT = dt.datetime(2026, 11, 29, 2, 15, tzinfo=dt.UTC)


def test_the_nightly_deactivation_starts_one_bulk_run_per_slot():
    result = deactivate_inactive_customers.apply(headers=slot_headers(NIGHT)).get()

    run = BulkRun.objects.get()
    assert result["bulk_run"] == str(run.pk) and run.operation == "customers.deactivate_inactive"
    ledger = ScheduleRun.objects.get(schedule="customers-deactivate-inactive")
    assert ledger.outcome == RunOutcome.SUCCEEDED and ledger.result["bulk_run"] == str(run.pk)
    # the same night again (a second Beat, a redelivery) starts nothing
    deactivate_inactive_customers.apply(headers=slot_headers(NIGHT)).get()
    assert BulkRun.objects.count() == 1


def test_a_night_whose_previous_run_still_holds_the_customers_is_skipped_busy():
    deactivate_inactive_customers.apply(headers=slot_headers(NIGHT)).get()
    holder = BulkRun.objects.get()

    next_night = NIGHT + dt.timedelta(days=1)
    result = deactivate_inactive_customers.apply(headers=slot_headers(next_night)).get()

    assert result["skipped"] == "busy"
    ledger = ScheduleRun.objects.get(schedule="customers-deactivate-inactive", slot=next_night)
    assert (ledger.outcome, ledger.reason) == (RunOutcome.SKIPPED, SkipReason.BUSY)
    assert ledger.result["run"] == str(holder.pk) and "holds" in ledger.error
    assert BulkRun.objects.count() == 1


def test_the_queue_health_check_keeps_its_snapshot_in_the_ledger(settings):
    settings.QUEUE_HEALTH_INSPECT_TIMEOUT = 0.2
    minute = dt.datetime(2026, 11, 28, 23, 0, tzinfo=dt.UTC)
    snapshot = queue_health.apply(headers=slot_headers(minute)).get()
    ledger = ScheduleRun.objects.get(schedule="queue-health")
    assert ledger.outcome == RunOutcome.SUCCEEDED and ledger.result == snapshot
    assert set(snapshot["queues"]) == {"events", "notifications", "bulk", "cache",
                                       "maintenance"}
