"""Starting the nightly deactivation: a bulk run with the configured days, one at a time."""

import datetime as dt

import pytest
from django.utils import timezone

from domain.bulk.models import BulkRun, BulkRunStatus
from domain.common.errors import Conflict
from domain.customers.models import Customer
from domain.customers.services import customers_deactivate_inactive
from tests.bulk_utils import run_to_end
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_it_starts_a_bulk_run_with_the_configured_days(settings):
    settings.CUSTOMERS_INACTIVE_DAYS = 30
    now = timezone.now()
    idle = CustomerFactory(last_active_at=now - dt.timedelta(days=31))
    active = CustomerFactory(last_active_at=now - dt.timedelta(days=29))

    run = customers_deactivate_inactive()

    assert run.operation == "customers.deactivate_inactive" and run.args == {"days": 30}
    assert run.status == BulkRunStatus.QUEUED and run.job_id is not None
    assert run_to_end(run).status == BulkRunStatus.SUCCEEDED
    assert Customer.objects.get(pk=idle.pk).is_active is False
    assert Customer.objects.get(pk=active.pk).is_active is True


def test_a_second_start_while_one_holds_the_customers_is_refused():
    first = customers_deactivate_inactive(days=10)
    with pytest.raises(Conflict) as refused:
        customers_deactivate_inactive(days=10)
    assert refused.value.code == "bulk_target_busy"
    assert refused.value.details["run"] == str(first.pk)
    assert BulkRun.objects.count() == 1
